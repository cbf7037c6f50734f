// Command envtest is not a program: this module pins the versions of the
// real Kubernetes API server and etcd that scripts/setup.sh builds into
// .cache/envtest for the operator's tests (controller-runtime's envtest
// starts them). It is a module of its own because k8s.io/kubernetes can
// only be built with replace directives for its staging modules, which
// must not leak into Petrel's own go.mod.
package main

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {}
