package deploy

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The two custom resources have no type in k8s.io/api. These local types cover the fields the manifests
// and the chart use, named as the resources' documented schemas name them (the OpenTelemetry Operator's
// opentelemetry.io/v1beta1 OpenTelemetryCollectorSpec; KEDA's keda.sh/v1alpha1 ScaledObject
// specification), so strict decoding refuses a misspelt or unsupported field. They are not the whole
// schemas: a field these types leave out fails the test until it is added here, checked against the
// schema.

type openTelemetryCollector struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Mode            string                      `json:"mode"`
		Image           string                      `json:"image,omitempty"`
		ImagePullPolicy corev1.PullPolicy           `json:"imagePullPolicy,omitempty"`
		Env             []corev1.EnvVar             `json:"env,omitempty"`
		Resources       corev1.ResourceRequirements `json:"resources,omitempty"`
		SecurityContext *corev1.SecurityContext     `json:"securityContext,omitempty"`
		VolumeMounts    []corev1.VolumeMount        `json:"volumeMounts,omitempty"`
		Volumes         []corev1.Volume             `json:"volumes,omitempty"`
		// The collector's configuration, an object in v1beta1 (a string in v1alpha1).
		Config map[string]any `json:"config"`
	} `json:"spec"`
}

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			Name                   string `json:"name"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval  *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod   *int32 `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount  *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount  *int32 `json:"maxReplicaCount,omitempty"`
		Fallback         *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback,omitempty"`
		Advanced *struct {
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string                         `json:"type"`
			Name              string                         `json:"name,omitempty"`
			MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
			UseCachedMetrics  bool                           `json:"useCachedMetrics,omitempty"`
			Metadata          map[string]string              `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// rayService is KubeRay's ray.io/v1 RayService, the fields the example uses, named as KubeRay's API
// (ray-operator/apis/ray/v1: RayServiceSpec, RayClusterSpec, HeadGroupSpec, WorkerGroupSpec). The pod
// templates are corev1's, so a misspelt container field fails as it would in a Deployment.
type rayService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ServeConfigV2    string `json:"serveConfigV2,omitempty"`
		RayClusterConfig struct {
			RayVersion              string `json:"rayVersion,omitempty"`
			EnableInTreeAutoscaling *bool  `json:"enableInTreeAutoscaling,omitempty"`
			HeadGroupSpec           struct {
				RayStartParams map[string]string      `json:"rayStartParams"`
				ServiceType    corev1.ServiceType     `json:"serviceType,omitempty"`
				Template       corev1.PodTemplateSpec `json:"template"`
			} `json:"headGroupSpec"`
			WorkerGroupSpecs []struct {
				GroupName      string                 `json:"groupName"`
				Replicas       *int32                 `json:"replicas,omitempty"`
				MinReplicas    *int32                 `json:"minReplicas,omitempty"`
				MaxReplicas    *int32                 `json:"maxReplicas,omitempty"`
				NumOfHosts     int32                  `json:"numOfHosts,omitempty"`
				RayStartParams map[string]string      `json:"rayStartParams"`
				Template       corev1.PodTemplateSpec `json:"template"`
			} `json:"workerGroupSpecs,omitempty"`
		} `json:"rayClusterConfig"`
	} `json:"spec"`
}

// inferenceService is KServe's serving.kserve.io/v1beta1 InferenceService with a custom predictor, the
// fields the example uses, named as KServe's API (pkg/apis/serving/v1beta1: PredictorSpec inlines a
// corev1.PodSpec and ComponentExtensionSpec). The pod spec is corev1's, decoded strictly.
type inferenceService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Predictor struct {
			corev1.PodSpec `json:",inline"`
			MinReplicas    *int32 `json:"minReplicas,omitempty"`
			MaxReplicas    int32  `json:"maxReplicas,omitempty"`
			ScaleTarget    *int32 `json:"scaleTarget,omitempty"`
			ScaleMetric    string `json:"scaleMetric,omitempty"`
		} `json:"predictor"`
	} `json:"spec"`
}
