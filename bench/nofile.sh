# Sourced by the benches that hold thousands of connections: every process (clients, agents,
# servers, stunnel) inherits this open-file limit, and the agents budget their descriptors from it.
if ! ulimit -n 200000 2>/dev/null; then
  echo "note: cannot raise the open-file limit to 200000; using the hard limit $(ulimit -Hn)"
  ulimit -n "$(ulimit -Hn)"
fi
