/**
 * The fields of the Kubernetes objects the agent reads, as the API serves them (JSON,
 * camelCase). Structural: @kubernetes/client-node's V1Pod, V1Service, … fit these, and so
 * does plain JSON from a watch. Everything is optional, as it is on the wire.
 */

export interface ObjectMeta {
  readonly name?: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly ownerReferences?: readonly OwnerReference[];
  readonly creationTimestamp?: string | Date;
  readonly deletionTimestamp?: string | Date;
}

export interface OwnerReference {
  readonly kind?: string;
  readonly name?: string;
  readonly controller?: boolean;
}

export interface Namespace {
  readonly metadata?: ObjectMeta;
}

export interface ContainerPort {
  readonly name?: string;
  readonly containerPort?: number;
  readonly protocol?: string;
}

export interface Pod {
  readonly metadata?: ObjectMeta;
  readonly spec?: {
    readonly nodeName?: string;
    readonly serviceAccountName?: string;
    readonly hostNetwork?: boolean;
    readonly containers?: readonly { readonly name?: string; readonly ports?: readonly ContainerPort[] }[];
    readonly initContainers?: readonly { readonly name?: string; readonly ports?: readonly ContainerPort[] }[];
  };
  readonly status?: {
    readonly phase?: string;
    readonly podIP?: string;
    readonly podIPs?: readonly { readonly ip?: string }[];
    readonly conditions?: readonly { readonly type?: string; readonly status?: string }[];
  };
}

export interface ServicePort {
  readonly name?: string;
  readonly port?: number;
  readonly targetPort?: number | string;
  readonly protocol?: string;
}

export interface KubeService {
  readonly metadata?: ObjectMeta;
  readonly spec?: {
    readonly type?: string;
    readonly clusterIP?: string;
    readonly clusterIPs?: readonly string[];
    readonly selector?: Readonly<Record<string, string>>;
    readonly ports?: readonly ServicePort[];
  };
}

export interface EndpointSlice {
  readonly metadata?: ObjectMeta;
  readonly addressType?: string;
  readonly endpoints?: readonly {
    readonly addresses?: readonly string[];
    readonly conditions?: { readonly ready?: boolean | null; readonly serving?: boolean | null; readonly terminating?: boolean | null };
    readonly targetRef?: { readonly kind?: string; readonly name?: string; readonly namespace?: string };
    readonly nodeName?: string;
  }[];
  readonly ports?: readonly { readonly name?: string; readonly port?: number; readonly protocol?: string }[];
}

/** security.istio.io/v1 AuthorizationPolicy. */
export interface AuthorizationPolicy {
  readonly metadata?: ObjectMeta;
  readonly spec?: {
    readonly selector?: { readonly matchLabels?: Readonly<Record<string, string>> };
    readonly targetRef?: unknown;
    readonly targetRefs?: readonly unknown[];
    readonly action?: string;
    readonly provider?: unknown;
    readonly rules?: readonly AuthorizationRule[];
  };
}

export interface AuthorizationRule {
  readonly from?: readonly { readonly source?: Readonly<Record<string, unknown>> }[];
  readonly to?: readonly { readonly operation?: Readonly<Record<string, unknown>> }[];
  readonly when?: readonly { readonly key?: string; readonly values?: readonly string[]; readonly notValues?: readonly string[] }[];
}

/** Everything discovery holds, by kind; keys are "<namespace>/<name>" (namespaces: the name). */
export interface KubeObjects {
  readonly namespaces: ReadonlyMap<string, Namespace>;
  readonly pods: ReadonlyMap<string, Pod>;
  readonly services: ReadonlyMap<string, KubeService>;
  readonly endpointSlices: ReadonlyMap<string, EndpointSlice>;
  readonly authorizationPolicies: ReadonlyMap<string, AuthorizationPolicy>;
}

/** How a translation names the cluster. */
export interface ClusterNames {
  readonly clusterId: string;
  readonly trustDomain: string;
  /** DNS suffix of service hostnames (default cluster.local). */
  readonly domainSuffix: string;
  /** Istio's root namespace: its policies apply mesh-wide (default istio-system). */
  readonly rootNamespace: string;
}

/** One object that could not be used (or only in part), and why. */
export interface TranslationProblem {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly reason: string;
}
