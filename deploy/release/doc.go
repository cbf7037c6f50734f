// Package release holds the tests of Petrel's release packaging: the
// tarball that scripts/release.sh builds (`make release`) and the container
// image that deploy/docker/Dockerfile describes. It has no API; the
// contracts it checks are these.
//
// The tarball, dist/petrel-<version>-linux-amd64.tar.gz, holds one top
// directory petrel-<version>-linux-amd64/ with
//
//	bin/petrel                     the binary, mode 0755
//	lib/libonnxruntime.so.1        ONNX Runtime (CPU), the version scripts/setup.sh pins
//	share/petrel/VERSION           the version and a newline
//	share/petrel/wasm/<name>.wasm  the example transforms meant to be deployed
//	README.md, LICENSE*            when the repository has them
//
// next to dist/SHA256SUMS (sha256sum format). The packaged binary finds the
// runtime through PETREL_ORT_LIB (or --ort-lib):
//
//	tar -xzf petrel-1.2.3-linux-amd64.tar.gz
//	export PETREL_ORT_LIB=$PWD/petrel-1.2.3-linux-amd64/lib/libonnxruntime.so.1
//	petrel-1.2.3-linux-amd64/bin/petrel version
//
// Reproducibility: with the same sources, toolchains, VERSION and
// SOURCE_DATE_EPOCH two builds are byte-identical, whatever the checkout
// path. Entries are sorted by name, owned by 0:0 (numeric), stamped with
// SOURCE_DATE_EPOCH, with modes 0755 (directories, bin/petrel) and 0644
// (the rest); the binary has no build id and no VCS stamp; gzip records no
// name or time.
//
// The image runs /usr/local/bin/petrel as uid 65532 on distroless
// cc-debian12, with the library at /usr/local/lib/petrel/libonnxruntime.so.1
// named by PETREL_ORT_LIB. No Docker engine is available to the tests, so
// the Dockerfile is checked statically (see deploy/docker/README.md).
//
// The tests need `make setup wasm-examples` to have run (the ONNX Runtime
// library in .cache/ort, the transforms in .cache/wasm); without them they
// fail and say so.
package release
