"""The protobuf messages of the built-in kinds `kubectl create` sends, as a table.

Written from the Kubernetes API's protobuf definitions (k8s.io/api and
k8s.io/apimachinery v0.34, the `generated.proto` files) and the JSON names and
pointer-ness of the Go types beside them. Each message is a list of fields,
`NUMBER JSON_NAME TYPE`, separated by `;`:

- TYPE is a scalar (`string`, `bool`, `int32`, `int64`, `bytes`, `double`,
  `float`, `fixed32`, `fixed64`), a message named in this table, `[]TYPE`
  (repeated) or `map[KEY]VALUE` (map entries: key field 1, value field 2).
- `?TYPE` keeps a scalar's zero value: the Go field is a pointer (`replicas: 0`
  is not `replicas` unset) or its JSON tag has no `omitempty`, so a JSON body
  would carry the zero too. Other zero scalars are dropped, as `omitempty` does.
- JSON_NAME `_` is a Go struct embedded with `json:",inline"`: its fields join
  the parent object (`Probe` holds `ProbeHandler`'s `httpGet`, ...).

Every message reachable from the kinds in `KINDS` is here (the whole pod
template included: `create job --from=cronjob/...` copies whatever the
CronJob's template holds), so the decoder can refuse any field it does not
know instead of dropping it.
"""

from __future__ import annotations

# (apiVersion, kind) -> the message its bytes are.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "Namespace"): "Namespace",
    ("v1", "Service"): "Service",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "ResourceQuota"): "ResourceQuota",  # kind not served yet
    ("apps/v1", "Deployment"): "Deployment",
    ("batch/v1", "Job"): "Job",
    ("batch/v1", "CronJob"): "CronJob",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "ClusterRoleBinding",
    ("scheduling.k8s.io/v1", "PriorityClass"): "PriorityClass",
    ("policy/v1", "PodDisruptionBudget"): "PodDisruptionBudget",
    ("networking.k8s.io/v1", "Ingress"): "Ingress",
    ("authentication.k8s.io/v1", "TokenRequest"): "TokenRequest",
    ("autoscaling/v1", "HorizontalPodAutoscaler"): "HorizontalPodAutoscaler",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "SelfSubjectReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "SelfSubjectRulesReview",
}

# Kinds every group version registers (a DELETE body names the resource's own version).
ANY_VERSION: dict[str, str] = {"DeleteOptions": "DeleteOptions"}

# The envelope every protobuf body is wrapped in (k8s.io/apimachinery runtime.Unknown).
ENVELOPE = "Unknown"

CONTAINER = (
    "1 name ?string; 2 image string; 3 command []string; 4 args []string; "
    "5 workingDir string; 6 ports []ContainerPort; 7 env []EnvVar; "
    "8 resources ResourceRequirements; 9 volumeMounts []VolumeMount; "
    "10 livenessProbe Probe; 11 readinessProbe Probe; 12 lifecycle Lifecycle; "
    "13 terminationMessagePath string; 14 imagePullPolicy string; "
    "15 securityContext SecurityContext; 16 stdin bool; 17 stdinOnce bool; 18 tty bool; "
    "19 envFrom []EnvFromSource; 20 terminationMessagePolicy string; "
    "21 volumeDevices []VolumeDevice; 22 startupProbe Probe; "
    "23 resizePolicy []ContainerResizePolicy; 24 restartPolicy ?string; "
    "25 restartPolicyRules []ContainerRestartRule"
)

MESSAGES: dict[str, str] = {
    "DeleteOptions": (
        "1 gracePeriodSeconds ?int64; 2 preconditions Preconditions; 3 orphanDependents ?bool; "
        "4 propagationPolicy ?string; 5 dryRun []string; "
        "6 ignoreStoreReadErrorWithClusterBreakingPotential ?bool"
    ),
    "Preconditions": "1 uid ?string; 2 resourceVersion ?string",
    "SelfSubjectReview": "1 metadata ObjectMeta; 2 status SelfSubjectReviewStatus",
    "SelfSubjectReviewStatus": "1 userInfo UserInfo",
    # extra (4, map of ExtraValue lists) is left out: a request carrying it is refused
    "UserInfo": "1 username string; 2 uid string; 3 groups []string",
    "SelfSubjectAccessReview": (
        "1 metadata ObjectMeta; 2 spec SelfSubjectAccessReviewSpec; "
        "3 status SubjectAccessReviewStatus"
    ),
    "SelfSubjectAccessReviewSpec": (
        "1 resourceAttributes ResourceAttributes; 2 nonResourceAttributes NonResourceAttributes"
    ),
    "ResourceAttributes": (
        "1 namespace string; 2 verb string; 3 group string; 4 version string; "
        "5 resource string; 6 subresource string; 7 name string; "
        "8 fieldSelector FieldSelectorAttributes; 9 labelSelector LabelSelectorAttributes"
    ),
    "FieldSelectorAttributes": "1 rawSelector string; 2 requirements []FieldSelectorRequirement",
    "LabelSelectorAttributes": "1 rawSelector string; 2 requirements []LabelSelectorRequirement",
    "FieldSelectorRequirement": "1 key ?string; 2 operator ?string; 3 values []string",
    "NonResourceAttributes": "1 path string; 2 verb string",
    "SubjectAccessReviewStatus": (
        "1 allowed ?bool; 2 reason string; 3 evaluationError string; 4 denied bool"
    ),
    "SelfSubjectRulesReview": (
        "1 metadata ObjectMeta; 2 spec SelfSubjectRulesReviewSpec; "
        "3 status SubjectRulesReviewStatus"
    ),
    "SelfSubjectRulesReviewSpec": "1 namespace string",
    # a request's status is empty; rules in it are refused
    "SubjectRulesReviewStatus": "3 incomplete ?bool; 4 evaluationError string",
    "HorizontalPodAutoscaler": (
        "1 metadata ObjectMeta; 2 spec HorizontalPodAutoscalerSpec; "
        "3 status HorizontalPodAutoscalerStatus"
    ),
    "HorizontalPodAutoscalerSpec": (
        "1 scaleTargetRef CrossVersionObjectReference; 2 minReplicas ?int32; "
        "3 maxReplicas ?int32; 4 targetCPUUtilizationPercentage ?int32"
    ),
    "CrossVersionObjectReference": "1 kind ?string; 2 name ?string; 3 apiVersion string",
    "HorizontalPodAutoscalerStatus": (
        "1 observedGeneration ?int64; 2 lastScaleTime Time; 3 currentReplicas ?int32; "
        "4 desiredReplicas ?int32; 5 currentCPUUtilizationPercentage ?int32"
    ),
    "TokenRequest": "1 metadata ObjectMeta; 2 spec TokenRequestSpec; 3 status TokenRequestStatus",
    "TokenRequestSpec": (
        "1 audiences []string; 3 boundObjectRef BoundObjectReference; 4 expirationSeconds ?int64"
    ),
    "TokenRequestStatus": "1 token ?string; 2 expirationTimestamp Time",
    "BoundObjectReference": "1 kind string; 2 apiVersion string; 3 name string; 4 uid string",
    "ConfigMap": (
        "1 metadata ObjectMeta; 2 data map[string]string; 3 binaryData map[string]bytes; "
        "4 immutable ?bool"
    ),
    "Secret": (
        "1 metadata ObjectMeta; 2 data map[string]bytes; 3 type string; "
        "4 stringData map[string]string; 5 immutable ?bool"
    ),
    "Namespace": "1 metadata ObjectMeta; 2 spec NamespaceSpec; 3 status NamespaceStatus",
    "Service": "1 metadata ObjectMeta; 2 spec ServiceSpec; 3 status ServiceStatus",
    "ServiceAccount": (
        "1 metadata ObjectMeta; 2 secrets []ObjectReference; "
        "3 imagePullSecrets []LocalObjectReference; 4 automountServiceAccountToken ?bool"
    ),
    "ResourceQuota": (
        "1 metadata ObjectMeta; 2 spec ResourceQuotaSpec; 3 status ResourceQuotaStatus"
    ),
    "Deployment": "1 metadata ObjectMeta; 2 spec DeploymentSpec; 3 status DeploymentStatus",
    "Job": "1 metadata ObjectMeta; 2 spec JobSpec; 3 status JobStatus",
    "CronJob": "1 metadata ObjectMeta; 2 spec CronJobSpec; 3 status CronJobStatus",
    "PriorityClass": (
        "1 metadata ObjectMeta; 2 value ?int32; 3 globalDefault bool; 4 description string; "
        "5 preemptionPolicy ?string"
    ),
    "PodDisruptionBudget": (
        "1 metadata ObjectMeta; 2 spec PodDisruptionBudgetSpec; 3 status PodDisruptionBudgetStatus"
    ),
    "Ingress": "1 metadata ObjectMeta; 2 spec IngressSpec; 3 status IngressStatus",
    "Role": "1 metadata ObjectMeta; 2 rules []PolicyRule",
    "RoleBinding": "1 metadata ObjectMeta; 2 subjects []Subject; 3 roleRef RoleRef",
    "ClusterRole": (
        "1 metadata ObjectMeta; 2 rules []PolicyRule; 3 aggregationRule AggregationRule"
    ),
    "ClusterRoleBinding": "1 metadata ObjectMeta; 2 subjects []Subject; 3 roleRef RoleRef",
    "Unknown": "1 typeMeta TypeMeta; 2 raw bytes; 3 contentEncoding string; 4 contentType string",
    "ObjectMeta": (
        "1 name string; 2 generateName string; 3 namespace string; 4 selfLink string; "
        "5 uid string; 6 resourceVersion string; 7 generation int64; 8 creationTimestamp Time; "
        "9 deletionTimestamp Time; 10 deletionGracePeriodSeconds ?int64; "
        "11 labels map[string]string; 12 annotations map[string]string; "
        "13 ownerReferences []OwnerReference; 14 finalizers []string; "
        "17 managedFields []ManagedFieldsEntry"
    ),
    "NamespaceSpec": "1 finalizers []string",
    "NamespaceStatus": "1 phase string; 2 conditions []NamespaceCondition",
    "ServiceSpec": (
        "1 ports []ServicePort; 2 selector map[string]string; 3 clusterIP string; "
        "4 type string; 5 externalIPs []string; 7 sessionAffinity string; "
        "8 loadBalancerIP string; 9 loadBalancerSourceRanges []string; 10 externalName string; "
        "11 externalTrafficPolicy string; 12 healthCheckNodePort int32; "
        "13 publishNotReadyAddresses bool; 14 sessionAffinityConfig SessionAffinityConfig; "
        "17 ipFamilyPolicy ?string; 18 clusterIPs []string; 19 ipFamilies []string; "
        "20 allocateLoadBalancerNodePorts ?bool; 21 loadBalancerClass ?string; "
        "22 internalTrafficPolicy ?string; 23 trafficDistribution ?string"
    ),
    "ServiceStatus": "1 loadBalancer LoadBalancerStatus; 2 conditions []Condition",
    "ObjectReference": (
        "1 kind string; 2 namespace string; 3 name string; 4 uid string; 5 apiVersion string; "
        "6 resourceVersion string; 7 fieldPath string"
    ),
    "LocalObjectReference": "1 name string",
    "ResourceQuotaSpec": (
        "1 hard map[string]Quantity; 2 scopes []string; 3 scopeSelector ScopeSelector"
    ),
    "ResourceQuotaStatus": "1 hard map[string]Quantity; 2 used map[string]Quantity",
    "DeploymentSpec": (
        "1 replicas ?int32; 2 selector LabelSelector; 3 template PodTemplateSpec; "
        "4 strategy DeploymentStrategy; 5 minReadySeconds int32; "
        "6 revisionHistoryLimit ?int32; 7 paused bool; 9 progressDeadlineSeconds ?int32"
    ),
    "DeploymentStatus": (
        "1 observedGeneration int64; 2 replicas int32; 3 updatedReplicas int32; "
        "4 availableReplicas int32; 5 unavailableReplicas int32; "
        "6 conditions []DeploymentCondition; 7 readyReplicas int32; 8 collisionCount ?int32; "
        "9 terminatingReplicas ?int32"
    ),
    "JobSpec": (
        "1 parallelism ?int32; 2 completions ?int32; 3 activeDeadlineSeconds ?int64; "
        "4 selector LabelSelector; 5 manualSelector ?bool; 6 template PodTemplateSpec; "
        "7 backoffLimit ?int32; 8 ttlSecondsAfterFinished ?int32; 9 completionMode ?string; "
        "10 suspend ?bool; 11 podFailurePolicy PodFailurePolicy; "
        "12 backoffLimitPerIndex ?int32; 13 maxFailedIndexes ?int32; "
        "14 podReplacementPolicy ?string; 15 managedBy ?string; "
        "16 successPolicy SuccessPolicy"
    ),
    "JobStatus": (
        "1 conditions []JobCondition; 2 startTime Time; 3 completionTime Time; 4 active int32; "
        "5 succeeded int32; 6 failed int32; 7 completedIndexes string; "
        "8 uncountedTerminatedPods UncountedTerminatedPods; 9 ready ?int32; "
        "10 failedIndexes ?string; 11 terminating ?int32"
    ),
    "CronJobSpec": (
        "1 schedule ?string; 2 startingDeadlineSeconds ?int64; 3 concurrencyPolicy string; "
        "4 suspend ?bool; 5 jobTemplate JobTemplateSpec; 6 successfulJobsHistoryLimit ?int32; "
        "7 failedJobsHistoryLimit ?int32; 8 timeZone ?string"
    ),
    "CronJobStatus": (
        "1 active []ObjectReference; 4 lastScheduleTime Time; 5 lastSuccessfulTime Time"
    ),
    "PodDisruptionBudgetSpec": (
        "1 minAvailable IntOrString; 2 selector LabelSelector; 3 maxUnavailable IntOrString; "
        "4 unhealthyPodEvictionPolicy ?string"
    ),
    "PodDisruptionBudgetStatus": (
        "1 observedGeneration int64; 2 disruptedPods map[string]Time; "
        "3 disruptionsAllowed ?int32; 4 currentHealthy ?int32; 5 desiredHealthy ?int32; "
        "6 expectedPods ?int32; 7 conditions []Condition"
    ),
    "IngressSpec": (
        "1 defaultBackend IngressBackend; 2 tls []IngressTLS; 3 rules []IngressRule; "
        "4 ingressClassName ?string"
    ),
    "IngressStatus": "1 loadBalancer IngressLoadBalancerStatus",
    "PolicyRule": (
        "1 verbs []string; 2 apiGroups []string; 3 resources []string; "
        "4 resourceNames []string; 5 nonResourceURLs []string"
    ),
    "Subject": "1 kind ?string; 2 apiGroup string; 3 name ?string; 4 namespace string",
    "RoleRef": "1 apiGroup ?string; 2 kind ?string; 3 name ?string",
    "AggregationRule": "1 clusterRoleSelectors []LabelSelector",
    "TypeMeta": "1 apiVersion string; 2 kind string",
    "Time": "1 seconds int64; 2 nanos int32",
    "OwnerReference": (
        "1 kind ?string; 3 name ?string; 4 uid ?string; 5 apiVersion ?string; "
        "6 controller ?bool; 7 blockOwnerDeletion ?bool"
    ),
    "ManagedFieldsEntry": (
        "1 manager string; 2 operation string; 3 apiVersion string; 4 time Time; "
        "6 fieldsType string; 7 fieldsV1 FieldsV1; 8 subresource string"
    ),
    "NamespaceCondition": (
        "1 type ?string; 2 status ?string; 4 lastTransitionTime Time; 5 reason string; "
        "6 message string"
    ),
    "ServicePort": (
        "1 name string; 2 protocol string; 3 port ?int32; 4 targetPort IntOrString; "
        "5 nodePort int32; 6 appProtocol ?string"
    ),
    "SessionAffinityConfig": "1 clientIP ClientIPConfig",
    "LoadBalancerStatus": "1 ingress []LoadBalancerIngress",
    "Condition": (
        "1 type ?string; 2 status ?string; 3 observedGeneration int64; "
        "4 lastTransitionTime Time; 5 reason ?string; 6 message ?string"
    ),
    "Quantity": "1 string string",
    "ScopeSelector": "1 matchExpressions []ScopedResourceSelectorRequirement",
    "LabelSelector": (
        "1 matchLabels map[string]string; 2 matchExpressions []LabelSelectorRequirement"
    ),
    "PodTemplateSpec": "1 metadata ObjectMeta; 2 spec PodSpec",
    "DeploymentStrategy": "1 type string; 2 rollingUpdate RollingUpdateDeployment",
    "DeploymentCondition": (
        "1 type ?string; 2 status ?string; 4 reason string; 5 message string; "
        "6 lastUpdateTime Time; 7 lastTransitionTime Time"
    ),
    "PodFailurePolicy": "1 rules []PodFailurePolicyRule",
    "SuccessPolicy": "1 rules []SuccessPolicyRule",
    "JobCondition": (
        "1 type ?string; 2 status ?string; 3 lastProbeTime Time; 4 lastTransitionTime Time; "
        "5 reason string; 6 message string"
    ),
    "UncountedTerminatedPods": "1 succeeded []string; 2 failed []string",
    "JobTemplateSpec": "1 metadata ObjectMeta; 2 spec JobSpec",
    "IntOrString": "1 type int64; 2 intVal int32; 3 strVal string",
    "IngressBackend": "3 resource TypedLocalObjectReference; 4 service IngressServiceBackend",
    "IngressTLS": "1 hosts []string; 2 secretName string",
    "IngressRule": "1 host string; 2 _ IngressRuleValue",
    "IngressLoadBalancerStatus": "1 ingress []IngressLoadBalancerIngress",
    "FieldsV1": "1 Raw bytes",
    "ClientIPConfig": "1 timeoutSeconds ?int32",
    "LoadBalancerIngress": (
        "1 ip string; 2 hostname string; 3 ipMode ?string; 4 ports []PortStatus"
    ),
    "ScopedResourceSelectorRequirement": (
        "1 scopeName ?string; 2 operator ?string; 3 values []string"
    ),
    "LabelSelectorRequirement": "1 key ?string; 2 operator ?string; 3 values []string",
    "PodSpec": (
        "1 volumes []Volume; 2 containers []Container; 3 restartPolicy string; "
        "4 terminationGracePeriodSeconds ?int64; 5 activeDeadlineSeconds ?int64; "
        "6 dnsPolicy string; 7 nodeSelector map[string]string; 8 serviceAccountName string; "
        "9 serviceAccount string; 10 nodeName string; 11 hostNetwork bool; 12 hostPID bool; "
        "13 hostIPC bool; 14 securityContext PodSecurityContext; "
        "15 imagePullSecrets []LocalObjectReference; 16 hostname string; 17 subdomain string; "
        "18 affinity Affinity; 19 schedulerName string; 20 initContainers []Container; "
        "21 automountServiceAccountToken ?bool; 22 tolerations []Toleration; "
        "23 hostAliases []HostAlias; 24 priorityClassName string; 25 priority ?int32; "
        "26 dnsConfig PodDNSConfig; 27 shareProcessNamespace ?bool; "
        "28 readinessGates []PodReadinessGate; 29 runtimeClassName ?string; "
        "30 enableServiceLinks ?bool; 31 preemptionPolicy ?string; "
        "32 overhead map[string]Quantity; "
        "33 topologySpreadConstraints []TopologySpreadConstraint; "
        "34 ephemeralContainers []EphemeralContainer; 35 setHostnameAsFQDN ?bool; 36 os PodOS; "
        "37 hostUsers ?bool; 38 schedulingGates []PodSchedulingGate; "
        "39 resourceClaims []PodResourceClaim; 40 resources ResourceRequirements; "
        "41 hostnameOverride ?string"
    ),
    "RollingUpdateDeployment": "1 maxUnavailable IntOrString; 2 maxSurge IntOrString",
    "PodFailurePolicyRule": (
        "1 action ?string; 2 onExitCodes PodFailurePolicyOnExitCodesRequirement; "
        "3 onPodConditions []PodFailurePolicyOnPodConditionsPattern"
    ),
    "SuccessPolicyRule": "1 succeededIndexes ?string; 2 succeededCount ?int32",
    "IngressServiceBackend": "1 name ?string; 2 port ServiceBackendPort",
    "TypedLocalObjectReference": "1 apiGroup ?string; 2 kind ?string; 3 name ?string",
    "IngressRuleValue": "1 http HTTPIngressRuleValue",
    "IngressLoadBalancerIngress": "1 ip string; 2 hostname string; 4 ports []IngressPortStatus",
    "PortStatus": "1 port ?int32; 2 protocol ?string; 3 error ?string",
    "Volume": "1 name ?string; 2 _ VolumeSource",
    "Container": CONTAINER,
    "EphemeralContainer": "1 _ EphemeralContainerCommon; 2 targetContainerName string",
    "PodSecurityContext": (
        "1 seLinuxOptions SELinuxOptions; 2 runAsUser ?int64; 3 runAsNonRoot ?bool; "
        "4 supplementalGroups []int64; 5 fsGroup ?int64; 6 runAsGroup ?int64; "
        "7 sysctls []Sysctl; 8 windowsOptions WindowsSecurityContextOptions; "
        "9 fsGroupChangePolicy ?string; 10 seccompProfile SeccompProfile; "
        "11 appArmorProfile AppArmorProfile; 12 supplementalGroupsPolicy ?string; "
        "13 seLinuxChangePolicy ?string"
    ),
    "Affinity": (
        "1 nodeAffinity NodeAffinity; 2 podAffinity PodAffinity; 3 podAntiAffinity PodAntiAffinity"
    ),
    "Toleration": (
        "1 key string; 2 operator string; 3 value string; 4 effect string; "
        "5 tolerationSeconds ?int64"
    ),
    "HostAlias": "1 ip ?string; 2 hostnames []string",
    "PodDNSConfig": "1 nameservers []string; 2 searches []string; 3 options []PodDNSConfigOption",
    "PodReadinessGate": "1 conditionType ?string",
    "TopologySpreadConstraint": (
        "1 maxSkew ?int32; 2 topologyKey ?string; 3 whenUnsatisfiable ?string; "
        "4 labelSelector LabelSelector; 5 minDomains ?int32; 6 nodeAffinityPolicy ?string; "
        "7 nodeTaintsPolicy ?string; 8 matchLabelKeys []string"
    ),
    "PodOS": "1 name ?string",
    "PodSchedulingGate": "1 name ?string",
    "PodResourceClaim": (
        "1 name ?string; 3 resourceClaimName ?string; 4 resourceClaimTemplateName ?string"
    ),
    "ResourceRequirements": (
        "1 limits map[string]Quantity; 2 requests map[string]Quantity; 3 claims []ResourceClaim"
    ),
    "PodFailurePolicyOnExitCodesRequirement": (
        "1 containerName ?string; 2 operator ?string; 3 values []int32"
    ),
    "PodFailurePolicyOnPodConditionsPattern": "1 type ?string; 2 status ?string",
    "ServiceBackendPort": "1 name string; 2 number int32",
    "HTTPIngressRuleValue": "1 paths []HTTPIngressPath",
    "IngressPortStatus": "1 port ?int32; 2 protocol ?string; 3 error ?string",
    "VolumeSource": (
        "1 hostPath HostPathVolumeSource; 2 emptyDir EmptyDirVolumeSource; "
        "3 gcePersistentDisk GCEPersistentDiskVolumeSource; "
        "4 awsElasticBlockStore AWSElasticBlockStoreVolumeSource; "
        "5 gitRepo GitRepoVolumeSource; 6 secret SecretVolumeSource; 7 nfs NFSVolumeSource; "
        "8 iscsi ISCSIVolumeSource; 9 glusterfs GlusterfsVolumeSource; "
        "10 persistentVolumeClaim PersistentVolumeClaimVolumeSource; 11 rbd RBDVolumeSource; "
        "12 flexVolume FlexVolumeSource; 13 cinder CinderVolumeSource; "
        "14 cephfs CephFSVolumeSource; 15 flocker FlockerVolumeSource; "
        "16 downwardAPI DownwardAPIVolumeSource; 17 fc FCVolumeSource; "
        "18 azureFile AzureFileVolumeSource; 19 configMap ConfigMapVolumeSource; "
        "20 vsphereVolume VsphereVirtualDiskVolumeSource; 21 quobyte QuobyteVolumeSource; "
        "22 azureDisk AzureDiskVolumeSource; "
        "23 photonPersistentDisk PhotonPersistentDiskVolumeSource; "
        "24 portworxVolume PortworxVolumeSource; 25 scaleIO ScaleIOVolumeSource; "
        "26 projected ProjectedVolumeSource; 27 storageos StorageOSVolumeSource; "
        "28 csi CSIVolumeSource; 29 ephemeral EphemeralVolumeSource; "
        "30 image ImageVolumeSource"
    ),
    "ContainerPort": (
        "1 name string; 2 hostPort int32; 3 containerPort ?int32; 4 protocol string; "
        "5 hostIP string"
    ),
    "EnvFromSource": (
        "1 prefix string; 2 configMapRef ConfigMapEnvSource; 3 secretRef SecretEnvSource"
    ),
    "EnvVar": "1 name ?string; 2 value string; 3 valueFrom EnvVarSource",
    "ContainerResizePolicy": "1 resourceName ?string; 2 restartPolicy ?string",
    "ContainerRestartRule": "1 action string; 2 exitCodes ContainerRestartRuleOnExitCodes",
    "VolumeMount": (
        "1 name ?string; 2 readOnly bool; 3 mountPath ?string; 4 subPath string; "
        "5 mountPropagation ?string; 6 subPathExpr string; 7 recursiveReadOnly ?string"
    ),
    "VolumeDevice": "1 name ?string; 2 devicePath ?string",
    "Probe": (
        "1 _ ProbeHandler; 2 initialDelaySeconds int32; 3 timeoutSeconds int32; "
        "4 periodSeconds int32; 5 successThreshold int32; 6 failureThreshold int32; "
        "7 terminationGracePeriodSeconds ?int64"
    ),
    "Lifecycle": "1 postStart LifecycleHandler; 2 preStop LifecycleHandler; 3 stopSignal ?string",
    "SecurityContext": (
        "1 capabilities Capabilities; 2 privileged ?bool; 3 seLinuxOptions SELinuxOptions; "
        "4 runAsUser ?int64; 5 runAsNonRoot ?bool; 6 readOnlyRootFilesystem ?bool; "
        "7 allowPrivilegeEscalation ?bool; 8 runAsGroup ?int64; 9 procMount ?string; "
        "10 windowsOptions WindowsSecurityContextOptions; 11 seccompProfile SeccompProfile; "
        "12 appArmorProfile AppArmorProfile"
    ),
    "EphemeralContainerCommon": CONTAINER,  # Container's fields, same numbers
    "SELinuxOptions": "1 user string; 2 role string; 3 type string; 4 level string",
    "WindowsSecurityContextOptions": (
        "1 gmsaCredentialSpecName ?string; 2 gmsaCredentialSpec ?string; "
        "3 runAsUserName ?string; 4 hostProcess ?bool"
    ),
    "Sysctl": "1 name ?string; 2 value ?string",
    "SeccompProfile": "1 type ?string; 2 localhostProfile ?string",
    "AppArmorProfile": "1 type ?string; 2 localhostProfile ?string",
    "NodeAffinity": (
        "1 requiredDuringSchedulingIgnoredDuringExecution NodeSelector; "
        "2 preferredDuringSchedulingIgnoredDuringExecution []PreferredSchedulingTerm"
    ),
    "PodAffinity": (
        "1 requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm; "
        "2 preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm"
    ),
    "PodAntiAffinity": (
        "1 requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm; "
        "2 preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm"
    ),
    "PodDNSConfigOption": "1 name string; 2 value ?string",
    "ResourceClaim": "1 name ?string; 2 request string",
    "HTTPIngressPath": "1 path string; 2 backend IngressBackend; 3 pathType ?string",
    "HostPathVolumeSource": "1 path ?string; 2 type ?string",
    "EmptyDirVolumeSource": "1 medium string; 2 sizeLimit Quantity",
    "GCEPersistentDiskVolumeSource": (
        "1 pdName ?string; 2 fsType string; 3 partition int32; 4 readOnly bool"
    ),
    "AWSElasticBlockStoreVolumeSource": (
        "1 volumeID ?string; 2 fsType string; 3 partition int32; 4 readOnly bool"
    ),
    "GitRepoVolumeSource": "1 repository ?string; 2 revision string; 3 directory string",
    "SecretVolumeSource": (
        "1 secretName string; 2 items []KeyToPath; 3 defaultMode ?int32; 4 optional ?bool"
    ),
    "NFSVolumeSource": "1 server ?string; 2 path ?string; 3 readOnly bool",
    "ISCSIVolumeSource": (
        "1 targetPortal ?string; 2 iqn ?string; 3 lun ?int32; 4 iscsiInterface string; "
        "5 fsType string; 6 readOnly bool; 7 portals []string; 8 chapAuthDiscovery bool; "
        "10 secretRef LocalObjectReference; 11 chapAuthSession bool; 12 initiatorName ?string"
    ),
    "GlusterfsVolumeSource": "1 endpoints ?string; 2 path ?string; 3 readOnly bool",
    "PersistentVolumeClaimVolumeSource": "1 claimName ?string; 2 readOnly bool",
    "RBDVolumeSource": (
        "1 monitors []string; 2 image ?string; 3 fsType string; 4 pool string; 5 user string; "
        "6 keyring string; 7 secretRef LocalObjectReference; 8 readOnly bool"
    ),
    "FlexVolumeSource": (
        "1 driver ?string; 2 fsType string; 3 secretRef LocalObjectReference; 4 readOnly bool; "
        "5 options map[string]string"
    ),
    "CinderVolumeSource": (
        "1 volumeID ?string; 2 fsType string; 3 readOnly bool; 4 secretRef LocalObjectReference"
    ),
    "CephFSVolumeSource": (
        "1 monitors []string; 2 path string; 3 user string; 4 secretFile string; "
        "5 secretRef LocalObjectReference; 6 readOnly bool"
    ),
    "FlockerVolumeSource": "1 datasetName string; 2 datasetUUID string",
    "DownwardAPIVolumeSource": "1 items []DownwardAPIVolumeFile; 2 defaultMode ?int32",
    "FCVolumeSource": (
        "1 targetWWNs []string; 2 lun ?int32; 3 fsType string; 4 readOnly bool; 5 wwids []string"
    ),
    "AzureFileVolumeSource": "1 secretName ?string; 2 shareName ?string; 3 readOnly bool",
    "ConfigMapVolumeSource": (
        "1 _ LocalObjectReference; 2 items []KeyToPath; 3 defaultMode ?int32; 4 optional ?bool"
    ),
    "VsphereVirtualDiskVolumeSource": (
        "1 volumePath ?string; 2 fsType string; 3 storagePolicyName string; "
        "4 storagePolicyID string"
    ),
    "QuobyteVolumeSource": (
        "1 registry ?string; 2 volume ?string; 3 readOnly bool; 4 user string; 5 group string; "
        "6 tenant string"
    ),
    "AzureDiskVolumeSource": (
        "1 diskName ?string; 2 diskURI ?string; 3 cachingMode ?string; 4 fsType ?string; "
        "5 readOnly ?bool; 6 kind ?string"
    ),
    "PhotonPersistentDiskVolumeSource": "1 pdID ?string; 2 fsType string",
    "ProjectedVolumeSource": "1 sources []VolumeProjection; 2 defaultMode ?int32",
    "PortworxVolumeSource": "1 volumeID ?string; 2 fsType string; 3 readOnly bool",
    "ScaleIOVolumeSource": (
        "1 gateway ?string; 2 system ?string; 3 secretRef LocalObjectReference; "
        "4 sslEnabled bool; 5 protectionDomain string; 6 storagePool string; "
        "7 storageMode string; 8 volumeName string; 9 fsType string; 10 readOnly bool"
    ),
    "StorageOSVolumeSource": (
        "1 volumeName string; 2 volumeNamespace string; 3 fsType string; 4 readOnly bool; "
        "5 secretRef LocalObjectReference"
    ),
    "CSIVolumeSource": (
        "1 driver ?string; 2 readOnly ?bool; 3 fsType ?string; "
        "4 volumeAttributes map[string]string; 5 nodePublishSecretRef LocalObjectReference"
    ),
    "EphemeralVolumeSource": "1 volumeClaimTemplate PersistentVolumeClaimTemplate",
    "ImageVolumeSource": "1 reference string; 2 pullPolicy string",
    "ConfigMapEnvSource": "1 _ LocalObjectReference; 2 optional ?bool",
    "SecretEnvSource": "1 _ LocalObjectReference; 2 optional ?bool",
    "EnvVarSource": (
        "1 fieldRef ObjectFieldSelector; 2 resourceFieldRef ResourceFieldSelector; "
        "3 configMapKeyRef ConfigMapKeySelector; 4 secretKeyRef SecretKeySelector; "
        "5 fileKeyRef FileKeySelector"
    ),
    "ContainerRestartRuleOnExitCodes": "1 operator string; 2 values []int32",
    "ProbeHandler": (
        "1 exec ExecAction; 2 httpGet HTTPGetAction; 3 tcpSocket TCPSocketAction; 4 grpc GRPCAction"
    ),
    "LifecycleHandler": (
        "1 exec ExecAction; 2 httpGet HTTPGetAction; 3 tcpSocket TCPSocketAction; "
        "4 sleep SleepAction"
    ),
    "Capabilities": "1 add []string; 2 drop []string",
    "NodeSelector": "1 nodeSelectorTerms []NodeSelectorTerm",
    "PreferredSchedulingTerm": "1 weight ?int32; 2 preference NodeSelectorTerm",
    "PodAffinityTerm": (
        "1 labelSelector LabelSelector; 2 namespaces []string; 3 topologyKey ?string; "
        "4 namespaceSelector LabelSelector; 5 matchLabelKeys []string; "
        "6 mismatchLabelKeys []string"
    ),
    "WeightedPodAffinityTerm": "1 weight ?int32; 2 podAffinityTerm PodAffinityTerm",
    "KeyToPath": "1 key ?string; 2 path ?string; 3 mode ?int32",
    "DownwardAPIVolumeFile": (
        "1 path ?string; 2 fieldRef ObjectFieldSelector; "
        "3 resourceFieldRef ResourceFieldSelector; 4 mode ?int32"
    ),
    "VolumeProjection": (
        "1 secret SecretProjection; 2 downwardAPI DownwardAPIProjection; "
        "3 configMap ConfigMapProjection; 4 serviceAccountToken ServiceAccountTokenProjection; "
        "5 clusterTrustBundle ClusterTrustBundleProjection; "
        "6 podCertificate PodCertificateProjection"
    ),
    "PersistentVolumeClaimTemplate": "1 metadata ObjectMeta; 2 spec PersistentVolumeClaimSpec",
    "ObjectFieldSelector": "1 apiVersion string; 2 fieldPath ?string",
    "ResourceFieldSelector": "1 containerName string; 2 resource ?string; 3 divisor Quantity",
    "ConfigMapKeySelector": "1 _ LocalObjectReference; 2 key ?string; 3 optional ?bool",
    "SecretKeySelector": "1 _ LocalObjectReference; 2 key ?string; 3 optional ?bool",
    "FileKeySelector": "1 volumeName ?string; 2 path ?string; 3 key ?string; 4 optional ?bool",
    "ExecAction": "1 command []string",
    "HTTPGetAction": (
        "1 path string; 2 port IntOrString; 3 host string; 4 scheme string; "
        "5 httpHeaders []HTTPHeader"
    ),
    "TCPSocketAction": "1 port IntOrString; 2 host string",
    "GRPCAction": "1 port ?int32; 2 service ?string",
    "SleepAction": "1 seconds ?int64",
    "NodeSelectorTerm": (
        "1 matchExpressions []NodeSelectorRequirement; 2 matchFields []NodeSelectorRequirement"
    ),
    "SecretProjection": "1 _ LocalObjectReference; 2 items []KeyToPath; 4 optional ?bool",
    "DownwardAPIProjection": "1 items []DownwardAPIVolumeFile",
    "ConfigMapProjection": "1 _ LocalObjectReference; 2 items []KeyToPath; 4 optional ?bool",
    "ServiceAccountTokenProjection": (
        "1 audience string; 2 expirationSeconds ?int64; 3 path ?string"
    ),
    "ClusterTrustBundleProjection": (
        "1 name ?string; 2 signerName ?string; 3 labelSelector LabelSelector; 4 path ?string; "
        "5 optional ?bool"
    ),
    "PodCertificateProjection": (
        "1 signerName string; 2 keyType string; 3 maxExpirationSeconds ?int32; "
        "4 credentialBundlePath string; 5 keyPath string; 6 certificateChainPath string"
    ),
    "PersistentVolumeClaimSpec": (
        "1 accessModes []string; 2 resources VolumeResourceRequirements; 3 volumeName string; "
        "4 selector LabelSelector; 5 storageClassName ?string; 6 volumeMode ?string; "
        "7 dataSource TypedLocalObjectReference; 8 dataSourceRef TypedObjectReference; "
        "9 volumeAttributesClassName ?string"
    ),
    "HTTPHeader": "1 name ?string; 2 value ?string",
    "NodeSelectorRequirement": "1 key ?string; 2 operator ?string; 3 values []string",
    "VolumeResourceRequirements": "1 limits map[string]Quantity; 2 requests map[string]Quantity",
    "TypedObjectReference": (
        "1 apiGroup ?string; 2 kind ?string; 3 name ?string; 4 namespace ?string"
    ),
}
