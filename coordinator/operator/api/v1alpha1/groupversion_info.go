// Package v1alpha1 holds the PetrelModel custom resource (group
// petrel.dev, version v1alpha1): a model version to push to the Petrel
// coordinator's registry and roll out, and the status the operator
// reports back (coordinator/operator).
//
// The deepcopy functions (zz_generated.deepcopy.go) and the CRD manifest
// (deploy/k8s/base/crds/petrel.dev_petrelmodels.yaml) are generated from
// these types by controller-gen; run `go generate ./coordinator/operator/...`
// after editing them. A test in coordinator/operator fails when the
// committed files are stale.
//
// +kubebuilder:object:generate=true
// +groupName=petrel.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

//go:generate go tool controller-gen object paths=./...
//go:generate go tool controller-gen crd paths=./... output:crd:artifacts:config=../../../../deploy/k8s/base/crds

// GroupVersion is the API group and version of the types in this package.
var GroupVersion = schema.GroupVersion{Group: "petrel.dev", Version: "v1alpha1"}

// AddToScheme registers PetrelModel and PetrelModelList with a scheme
// (there is no package-level scheme builder: the caller owns its scheme).
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &PetrelModel{}, &PetrelModelList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
