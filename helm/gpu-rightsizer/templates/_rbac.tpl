{{/*
The operator's permissions, each rule next to the feature that makes the call. Exact verbs and
resources only, never "*". tests/unit/test_helm_chart.py checks these rules against the calls in
operator/rightsizer (adapters and kopf handlers) in both directions.
*/}}

{{/* Cluster-scoped resources: always granted by the ClusterRole. */}}
{{- define "gpu-rightsizer.clusterRules" -}}
# kopf: discovers the resources it serves and notices CRDs appearing later (e.g. KEDA installed).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.namespaces }}
# kopf: follows the watched namespaces being created and deleted.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.peering.enabled }}
# kopf peering: replicas announce themselves in one ClusterKopfPeering; the first replica creates it.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "create"]
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  resourceNames: [{{ include "gpu-rightsizer.peeringName" . | quote }}]
  verbs: ["get", "patch"]
{{- end }}
# GPUWorkloads: GPU model and pool of the nodes running a workload's pods (listed and watched into memory).
{{- if .Values.consolidation.enabled }}
# Consolidation: reads nodes live before acting, records the drain intent (annotation), taints,
# and cordons for the `none` provider.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch", "patch"]
{{- else }}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list", "watch"]
{{- end }}
# GPUNodePools: prices and GPU models for cost (listed and watched into memory).
{{- if .Values.consolidation.enabled }}
# Consolidation: a timer per pool writes its status (and kopf its finalizer and annotations).
- apiGroups: ["rightsizer.io"]
  resources: ["gpunodepools"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["rightsizer.io"]
  resources: ["gpunodepools/status"]
  verbs: ["patch"]
# Consolidation: the packing simulation reads every pod, and waits for evicted pods' replacements;
# the checkpoint handshake writes rightsizer.io/evict-requested on pods that ask for it.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "patch"]
# Consolidation: evictions go through the Eviction API, so the API server enforces PDBs too.
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list"]
# Consolidation: GPUWorkloads say which of the pods it may move are protected or training, in any
# namespace whose pods run on the nodes it empties.
- apiGroups: ["rightsizer.io"]
  resources: ["gpuworkloads"]
  verbs: ["list"]
# Consolidation: ReplicaSets' owners tie a pod to its Deployment (and so to its GPUWorkload) from the
# moment it exists.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
# Consolidation: a drain waits until the evicted pods' controllers have their replicas back.
- apiGroups: ["apps"]
  resources: ["replicasets", "statefulsets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["replicationcontrollers"]
  verbs: ["get"]
# Consolidation, make-before-break: before evicting Ready pods of a Deployment or StatefulSet a drain
# raises its replicas (count and record in one write of the object), and restores them afterwards.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["patch"]
# Make-before-break: owners left raised by a drain whose node went with the operator down are found
# by their rightsizer.io/drain-surge label (one filtered list) and restored.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["list"]
{{- if .Values.providers.kwok }}
# Consolidation, kwok/static provider: adds and removes the Node objects themselves.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["create", "delete"]
{{- end }}
{{- if .Values.providers.clusterapi }}
# Consolidation, Cluster API provider: MachineDeployment replicas and the delete-machine annotation.
- apiGroups: ["cluster.x-k8s.io"]
  resources: ["machinedeployments/scale"]
  verbs: ["get", "patch"]
- apiGroups: ["cluster.x-k8s.io"]
  resources: ["machines"]
  verbs: ["list", "patch"]
{{- end }}
{{- if .Values.providers.karpenter }}
# Consolidation, Karpenter provider: deletes the drained node's NodeClaim (Karpenter's termination
# flow drains and deletes the node); the user's NodePool is never changed.
- apiGroups: ["karpenter.sh"]
  resources: ["nodeclaims"]
  verbs: ["list", "delete"]
# ... and reads its NodePool each pass: Karpenter missing, or the NodePool, holds the pool.
- apiGroups: ["karpenter.sh"]
  resources: ["nodepools"]
  verbs: ["get"]
{{- end }}
{{- else }}
- apiGroups: ["rightsizer.io"]
  resources: ["gpunodepools"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}

{{/* Namespaced resources of the GPUWorkload loop: cluster-wide, or a Role per watched namespace. */}}
{{- define "gpu-rightsizer.workloadRules" -}}
# GPUWorkloads: kopf lists and watches them, a timer per workload patches its status and
# annotations (and kopf its finalizer).
- apiGroups: ["rightsizer.io"]
  resources: ["gpuworkloads"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["rightsizer.io"]
  resources: ["gpuworkloads/status"]
  verbs: ["patch"]
# GPUWorkloads: the target's pods (listed and watched into memory) and their cost annotations.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# Decisions are explained as events on the GPUWorkload (and kopf reports handler failures).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# GPUWorkloads: a target also scaled by an HPA, a KEDA ScaledObject or a Knative PodAutoscaler is a
# conflict (listed and watched into memory).
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["list", "watch"]
- apiGroups: ["autoscaling.internal.knative.dev"]
  resources: ["podautoscalers"]
  verbs: ["list", "watch"]
{{- range .Values.rbac.scaleTargets }}
# GPUWorkloads: targets — replicas through /scale, the object for its annotations and spec.suspend.
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ range $i, $r := .resources }}{{ if $i }}, {{ end }}{{ $r | quote }}{{ end }}]
  verbs: ["get", "patch"]
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ range $i, $r := .resources }}{{ if $i }}, {{ end }}{{ printf "%s/scale" $r | quote }}{{ end }}]
  verbs: ["get", "patch"]
{{- end }}
{{- /* The kinds of adapters/workload_kinds.py: group, plural, and whether replicas go through /scale. */}}
{{- $kinds := dict
  "Job" (list "batch" "jobs" false)
  "JobSet" (list "jobset.x-k8s.io" "jobsets" false)
  "PyTorchJob" (list "kubeflow.org" "pytorchjobs" true)
  "RayCluster" (list "ray.io" "rayclusters" false)
  "LeaderWorkerSet" (list "leaderworkerset.x-k8s.io" "leaderworkersets" true)
  "TrainJob" (list "trainer.kubeflow.org" "trainjobs" false)
  "RayJob" (list "ray.io" "rayjobs" false)
  "InferenceService" (list "serving.kserve.io" "inferenceservices" false)
  "Notebook" (list "kubeflow.org" "notebooks" false)
}}
{{- range .Values.rbac.workloadKinds }}
{{- if eq . "Kueue" }}
# GPUWorkloads: jobs queued by Kueue are suspended and resumed through their Kueue Workload (spec.active).
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list", "patch"]
{{- else }}
{{- $k := required (printf "rbac.workloadKinds: unknown kind %q (known: %s, Kueue)" . (keys $kinds | sortAlpha | join ", ")) (get $kinds .) }}
# GPUWorkloads: {{ . }} targets — pods by the kind's labels; replicas, suspend field or annotation, and annotations on the object.
- apiGroups: [{{ index $k 0 | quote }}]
  resources: [{{ index $k 1 | quote }}]
  verbs: ["get", "patch"]
{{- if index $k 2 }}
- apiGroups: [{{ index $k 0 | quote }}]
  resources: [{{ printf "%s/scale" (index $k 1) | quote }}]
  verbs: ["get", "patch"]
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "gpu-rightsizer.eventRules" -}}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* dcgm-exporter discovery: the exporters behind a Service, from its EndpointSlices. */}}
{{- define "gpu-rightsizer.dcgmDiscoveryRules" -}}
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
{{- end -}}
