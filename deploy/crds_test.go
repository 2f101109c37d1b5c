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
