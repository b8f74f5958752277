// Socket options Node does not expose: IP_TRANSPARENT, SO_MARK, SO_REUSEPORT, SO_LINGER,
// SO_SNDBUF/SO_RCVBUF before connect, an unconnected TCP socket bound to a non-local
// address, and a listening socket made with options set before bind(); plus malloc_trim.
// Plain syscalls; nothing is spawned.
#define _GNU_SOURCE
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static napi_value fail(napi_env env, const char* op, int err) {
  char msg[160];
  const char* name = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s failed: %s", op, strerror(err));
  napi_value code, text, error, num;
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  napi_create_int32(env, -err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &text);
  napi_set_named_property(env, error, "syscall", text);
  napi_throw(env, error);
  return NULL;
}

static int arg_int(napi_env env, napi_callback_info info, size_t want, int32_t* out) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  for (size_t i = 0; i < want; i++) {
    if (i >= argc || napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected integer arguments");
      return -1;
    }
  }
  return 0;
}

static int family_of(int fd) {
  int domain = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return -1;
  return domain;
}

static int set_transparent(int fd, int on) {
  int domain = family_of(fd);
  if (domain < 0) return -1;
  if (domain == AF_INET6) return setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on);
  return setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on);
}

// setTransparent(fd): IP_TRANSPARENT (IPV6_TRANSPARENT on an AF_INET6 socket).
static napi_value SetTransparent(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (arg_int(env, info, 1, a) != 0) return NULL;
  if (set_transparent(a[0], 1) != 0) return fail(env, "setsockopt(IP_TRANSPARENT)", errno);
  return NULL;
}

// getTransparent(fd) -> boolean
static napi_value GetTransparent(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (arg_int(env, info, 1, a) != 0) return NULL;
  int domain = family_of(a[0]);
  int on = 0;
  socklen_t len = sizeof on;
  int rc = domain == AF_INET6 ? getsockopt(a[0], SOL_IPV6, IPV6_TRANSPARENT, &on, &len) : getsockopt(a[0], SOL_IP, IP_TRANSPARENT, &on, &len);
  if (domain < 0 || rc != 0) return fail(env, "getsockopt(IP_TRANSPARENT)", errno);
  napi_value out;
  napi_get_boolean(env, on != 0, &out);
  return out;
}

// setMark(fd, mark): SO_MARK.
static napi_value SetMark(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (arg_int(env, info, 2, a) != 0) return NULL;
  uint32_t mark = (uint32_t)a[1];
  if (setsockopt(a[0], SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) return fail(env, "setsockopt(SO_MARK)", errno);
  return NULL;
}

// getMark(fd) -> number
static napi_value GetMark(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (arg_int(env, info, 1, a) != 0) return NULL;
  uint32_t mark = 0;
  socklen_t len = sizeof mark;
  if (getsockopt(a[0], SOL_SOCKET, SO_MARK, &mark, &len) != 0) return fail(env, "getsockopt(SO_MARK)", errno);
  napi_value out;
  napi_create_uint32(env, mark, &out);
  return out;
}

// Fills `ss` from an IPv4/IPv6 literal and a port; returns the address length, 0 if invalid.
static socklen_t make_addr(int family, const char* ip, int port, struct sockaddr_storage* ss) {
  memset(ss, 0, sizeof *ss);
  if (family == 4) {
    struct sockaddr_in* s4 = (struct sockaddr_in*)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, ip, &s4->sin_addr) == 1 ? sizeof *s4 : 0;
  }
  struct sockaddr_in6* s6 = (struct sockaddr_in6*)ss;
  s6->sin6_family = AF_INET6;
  s6->sin6_port = htons((uint16_t)port);
  return inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1 ? sizeof *s6 : 0;
}

// Reads a string argument into buf (empty for null/undefined); -1 (TypeError thrown) otherwise.
static int arg_ip(napi_env env, napi_value v, char* buf, size_t size) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  buf[0] = 0;
  if (t == napi_string) {
    size_t n = 0;
    napi_get_value_string_utf8(env, v, buf, size, &n);
    return 0;
  }
  if (t == napi_null || t == napi_undefined) return 0;
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "an IP address must be a string or null");
  return -1;
}

// The new socket as a number; or, when the step `op` failed (errno still set), closes it and throws.
static napi_value socket_result(napi_env env, int fd, const char* op) {
  if (op != NULL) {
    int err = errno;
    close(fd);
    return fail(env, op, err);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// openTcpSocket(family 4|6, mark, transparent 0|1, bindIp string|null, bufferBytes) -> fd
// A non-blocking, close-on-exec TCP socket, not yet connected. With bindIp it is bound
// to that address (port chosen at connect time), which may be non-local when transparent.
// bufferBytes > 0 fixes SO_SNDBUF and SO_RCVBUF (the kernel doubles the value and stops
// autotuning them), before connect so that the window scale is negotiated for it.
static napi_value OpenTcpSocket(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t family = 0, mark = 0, buffer = 0;
  bool transparent = false;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &family) != napi_ok || napi_get_value_int32(env, argv[1], &mark) != napi_ok ||
      napi_get_value_bool(env, argv[2], &transparent) != napi_ok || (family != 4 && family != 6) ||
      (argc >= 5 && napi_get_value_int32(env, argv[4], &buffer) != napi_ok)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "openTcpSocket(family 4|6, mark, transparent, bindIp|null, bufferBytes)");
    return NULL;
  }
  char ip[64];
  if (arg_ip(env, argv[3], ip, sizeof ip) != 0) return NULL;
  struct sockaddr_storage ss;
  socklen_t slen = 0;
  if (ip[0] != 0 && (slen = make_addr(family, ip, 0, &ss)) == 0) return fail(env, "inet_pton", EINVAL);
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, "socket", errno);
  const char* op = NULL;
  int one = 1;
  uint32_t m = (uint32_t)mark;
  if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) != 0) op = "setsockopt(SO_MARK)";
  else if (buffer > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer) != 0) op = "setsockopt(SO_SNDBUF)";
  else if (buffer > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer) != 0) op = "setsockopt(SO_RCVBUF)";
  else if (transparent && set_transparent(fd, 1) != 0) op = "setsockopt(IP_TRANSPARENT)";
  else if (slen > 0 && family == 4 && setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0) op = "setsockopt(IP_BIND_ADDRESS_NO_PORT)";
  else if (slen > 0 && bind(fd, (struct sockaddr*)&ss, slen) != 0) op = "bind";
  return socket_result(env, fd, op);
}

// listenTcp(family 4|6, ip, port, reusePort, transparent, backlog) -> fd
// A non-blocking, close-on-exec listening TCP socket with SO_REUSEADDR (as Node's own),
// and SO_REUSEPORT / IP_TRANSPARENT set before bind(). Node adopts it with listen({ fd }).
static napi_value ListenTcp(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t family = 0, port = -1, backlog = 0;
  bool reuse_port = false, transparent = false;
  if (argc < 6 || napi_get_value_int32(env, argv[0], &family) != napi_ok || napi_get_value_int32(env, argv[2], &port) != napi_ok ||
      napi_get_value_bool(env, argv[3], &reuse_port) != napi_ok || napi_get_value_bool(env, argv[4], &transparent) != napi_ok ||
      napi_get_value_int32(env, argv[5], &backlog) != napi_ok || (family != 4 && family != 6) || port < 0 || port > 65535 || backlog < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "listenTcp(family 4|6, ip, port 0-65535, reusePort, transparent, backlog >= 1)");
    return NULL;
  }
  char ip[64];
  if (arg_ip(env, argv[1], ip, sizeof ip) != 0) return NULL;
  struct sockaddr_storage ss;
  socklen_t slen = make_addr(family, ip, port, &ss);
  if (slen == 0) return fail(env, "inet_pton", EINVAL);
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, "socket", errno);
  const char* op = NULL;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) op = "setsockopt(SO_REUSEADDR)";
  else if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) op = "setsockopt(SO_REUSEPORT)";
  else if (transparent && set_transparent(fd, 1) != 0) op = "setsockopt(IP_TRANSPARENT)";
  else if (bind(fd, (struct sockaddr*)&ss, slen) != 0) op = "bind";
  else if (listen(fd, backlog) != 0) op = "listen";
  return socket_result(env, fd, op);
}

// setLingerReset(fd, on): SO_LINGER {1, 0} (on) or off. With it, close() — including the
// kernel's, when the process dies — resets the connection instead of sending a FIN.
static napi_value SetLingerReset(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (arg_int(env, info, 2, a) != 0) return NULL;
  struct linger l = {a[1] != 0 ? 1 : 0, 0};
  if (setsockopt(a[0], SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0) return fail(env, "setsockopt(SO_LINGER)", errno);
  return NULL;
}

// getLingerReset(fd) -> boolean
static napi_value GetLingerReset(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (arg_int(env, info, 1, a) != 0) return NULL;
  struct linger l = {0, 0};
  socklen_t len = sizeof l;
  if (getsockopt(a[0], SOL_SOCKET, SO_LINGER, &l, &len) != 0) return fail(env, "getsockopt(SO_LINGER)", errno);
  napi_value out;
  napi_get_boolean(env, l.l_onoff != 0 && l.l_linger == 0, &out);
  return out;
}

// getReusePort(fd) -> boolean
static napi_value GetReusePort(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (arg_int(env, info, 1, a) != 0) return NULL;
  int on = 0;
  socklen_t len = sizeof on;
  if (getsockopt(a[0], SOL_SOCKET, SO_REUSEPORT, &on, &len) != 0) return fail(env, "getsockopt(SO_REUSEPORT)", errno);
  napi_value out;
  napi_get_boolean(env, on != 0, &out);
  return out;
}

// getBuffers(fd) -> [sndbuf, rcvbuf] as the kernel reports them (doubled).
static napi_value GetBuffers(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (arg_int(env, info, 1, a) != 0) return NULL;
  int snd = 0, rcv = 0;
  socklen_t len = sizeof snd;
  if (getsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &snd, &len) != 0) return fail(env, "getsockopt(SO_SNDBUF)", errno);
  len = sizeof rcv;
  if (getsockopt(a[0], SOL_SOCKET, SO_RCVBUF, &rcv, &len) != 0) return fail(env, "getsockopt(SO_RCVBUF)", errno);
  napi_value out, v;
  napi_create_array_with_length(env, 2, &out);
  napi_create_int32(env, snd, &v);
  napi_set_element(env, out, 0, v);
  napi_create_int32(env, rcv, &v);
  napi_set_element(env, out, 1, v);
  return out;
}

// releaseFreedMemory() -> boolean: give memory the allocator holds but nobody uses back to
// the kernel (glibc's malloc_trim; false where there is no glibc or nothing was released).
static napi_value ReleaseFreedMemory(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
#ifdef __GLIBC__
  napi_get_boolean(env, malloc_trim(0) != 0, &out);
#else
  napi_get_boolean(env, false, &out);
#endif
  return out;
}

// closeFd(fd): for a socket opened here that never reached a net.Socket.
static napi_value CloseFd(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (arg_int(env, info, 1, a) != 0) return NULL;
  close(a[0]);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"setTransparent", NULL, SetTransparent, NULL, NULL, NULL, napi_default, NULL},
    {"getTransparent", NULL, GetTransparent, NULL, NULL, NULL, napi_default, NULL},
    {"setMark", NULL, SetMark, NULL, NULL, NULL, napi_default, NULL},
    {"getMark", NULL, GetMark, NULL, NULL, NULL, napi_default, NULL},
    {"openTcpSocket", NULL, OpenTcpSocket, NULL, NULL, NULL, napi_default, NULL},
    {"getBuffers", NULL, GetBuffers, NULL, NULL, NULL, napi_default, NULL},
    {"releaseFreedMemory", NULL, ReleaseFreedMemory, NULL, NULL, NULL, napi_default, NULL},
    {"listenTcp", NULL, ListenTcp, NULL, NULL, NULL, napi_default, NULL},
    {"getReusePort", NULL, GetReusePort, NULL, NULL, NULL, napi_default, NULL},
    {"setLingerReset", NULL, SetLingerReset, NULL, NULL, NULL, napi_default, NULL},
    {"getLingerReset", NULL, GetLingerReset, NULL, NULL, NULL, napi_default, NULL},
    {"closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
