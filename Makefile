# Petrel. `make run` installs what is missing and starts the all-in-one
# local mesh (`petrel dev`: a coordinator with embedded NATS, three nodes in
# simulated regions, a sample model pushed and rolled out); `make test` runs
# vet, staticcheck and the whole test suite.
SHELL := /bin/bash
GO ?= go
BIN := bin/petrel
ORT_LIB := $(CURDIR)/.cache/ort/libonnxruntime.so.1
export PETREL_ORT_LIB ?= $(ORT_LIB)
export CGO_ENABLED := 1
REPO_DIR := .cache/sample-repo
LISTEN ?= 127.0.0.1:8000

.PHONY: setup build wasm-examples run run-node test vet lint unit fuzz bench release clean

setup: .cache/.setup-done

.cache/.setup-done: scripts/setup.sh go.mod scripts/envtest/go.mod
	./scripts/setup.sh
	touch $@

build: setup wasm-examples
	$(GO) build -trimpath -o $(BIN) ./cmd/petrel

# The example WebAssembly transforms (models/wasm/examples), built as WASI
# reactors into .cache/wasm/<name>.wasm. Nothing prebuilt is committed.
WASM_EXAMPLES := $(notdir $(wildcard models/wasm/examples/*))
wasm-examples:
	@mkdir -p .cache/wasm
	for e in $(WASM_EXAMPLES); do \
		CGO_ENABLED=0 GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildmode=c-shared \
			-o .cache/wasm/$$e.wasm ./models/wasm/examples/$$e || exit 1; done

# The main job: the all-in-one local mesh.
run: build
	$(BIN) dev --dir .cache/dev

# One standalone node serving a sample model from a repository directory.
run-node: build
	$(BIN) model sample --repo $(REPO_DIR)
	$(BIN) node --model-repo $(REPO_DIR) --listen $(LISTEN) --plain-tcp --dev-cert-dir .cache/dev-tls --print-examples

vet:
	$(GO) vet ./...
	# The gpu-tagged tests run only on a GPU machine (docs/gpu.md); CI at
	# least compiles and vets them.
	$(GO) vet -tags gpu ./models/ort/ ./node/

lint: setup
	.cache/bin/staticcheck ./...

unit: setup wasm-examples
	$(GO) test -count=1 -timeout 20m ./...

# The whole test suite, as CI runs it.
test: setup vet lint unit

FUZZTIME ?= 30s
fuzz: setup
	$(GO) test -run='^$$' -fuzz=FuzzDecodeRequestJSON -fuzztime=$(FUZZTIME) ./models/oip/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeRequestBinary -fuzztime=$(FUZZTIME) ./models/oip/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeResponse -fuzztime=$(FUZZTIME) ./models/oip/
	$(GO) test -run='^$$' -fuzz=FuzzAppendFloat32 -fuzztime=$(FUZZTIME) ./models/oip/
	$(GO) test -run='^$$' -fuzz=FuzzFlatF32 -fuzztime=$(FUZZTIME) ./models/oip/
	$(GO) test -run='^$$' -fuzz='^FuzzCoordinateUnmarshal$$' -fuzztime=$(FUZZTIME) ./routing/
	$(GO) test -run='^$$' -fuzz='^FuzzParseLocation$$' -fuzztime=$(FUZZTIME) ./routing/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeMeta$$' -fuzztime=$(FUZZTIME) ./node/mesh/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeState$$' -fuzztime=$(FUZZTIME) ./node/mesh/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeMessage$$' -fuzztime=$(FUZZTIME) ./node/mesh/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeAck$$' -fuzztime=$(FUZZTIME) ./node/mesh/
	$(GO) test -run='^$$' -fuzz='^FuzzParseRange$$' -fuzztime=$(FUZZTIME) ./node/blobstore/
	$(GO) test -run='^$$' -fuzz='^FuzzParseContentRange$$' -fuzztime=$(FUZZTIME) ./node/blobstore/
	$(GO) test -run='^$$' -fuzz='^FuzzHandler$$' -fuzztime=$(FUZZTIME) ./node/blobstore/
	$(GO) test -run='^$$' -fuzz='^FuzzFetchResponse$$' -fuzztime=$(FUZZTIME) ./node/blobstore/
	$(GO) test -run='^$$' -fuzz='^FuzzParseCA$$' -fuzztime=$(FUZZTIME) ./node/meshtls/
	$(GO) test -run='^$$' -fuzz='^FuzzParseNetnsList$$' -fuzztime=$(FUZZTIME) ./simulations/netns/
	$(GO) test -run='^$$' -fuzz='^FuzzParsePids$$' -fuzztime=$(FUZZTIME) ./simulations/netns/
	$(GO) test -run='^$$' -fuzz='^FuzzParseCapEff$$' -fuzztime=$(FUZZTIME) ./simulations/netns/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeDesired$$' -fuzztime=$(FUZZTIME) ./coordinator/bus/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeNodeStatus$$' -fuzztime=$(FUZZTIME) ./coordinator/bus/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeNodeStats$$' -fuzztime=$(FUZZTIME) ./coordinator/bus/
	$(GO) test -run='^$$' -fuzz='^FuzzParseCIDRTable$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=0 ./coordinator/georoute/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRollout$$' -fuzztime=$(FUZZTIME) ./coordinator/rollout/
	$(GO) test -run='^$$' -fuzz='^FuzzVerifyManifest$$' -fuzztime=$(FUZZTIME) ./models/
	$(GO) test -run='^$$' -fuzz='^FuzzParseGoldenFile$$' -fuzztime=$(FUZZTIME) ./models/golden/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeUpdate$$' -fuzztime=$(FUZZTIME) ./coordinator/bus/
	$(GO) test -run='^$$' -fuzz='^FuzzLoadIDX$$' -fuzztime=$(FUZZTIME) ./federated/
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./models/onnx/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRecord$$' -fuzztime=$(FUZZTIME) ./node/feedback/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeFrame$$' -fuzztime=$(FUZZTIME) ./models/wasm/guest/
	$(GO) test -run='^$$' -fuzz='^FuzzFrameDecoder$$' -fuzztime=$(FUZZTIME) ./models/wasm/guest/
	$(GO) test -run='^$$' -fuzz='^FuzzNum$$' -fuzztime=$(FUZZTIME) ./models/wasm/examples/features/
	$(GO) test -run='^$$' -fuzz='^FuzzTransform$$' -fuzztime=$(FUZZTIME) ./models/wasm/examples/features/
	for f in FuzzDecode FuzzDecodeAdvertiseKeys FuzzDecodePublicKeys FuzzDecodeShareKeys FuzzDecodeCiphertexts FuzzDecodeMaskedInput FuzzDecodeUnmaskRequest FuzzDecodeUnmaskResponse; do \
		$(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) ./federated/secagg/ || exit 1; done

# Versioned, reproducible tarballs (binary, ONNX Runtime library, example
# transforms) and SHA256SUMS in dist/ (deploy/docker/README.md, docs/deploy.md).
release: setup wasm-examples
	./scripts/release.sh

# Benchmarks recorded in docs/PERFORMANCE.md.
bench: build
	./scripts/bench.sh

clean:
	rm -rf bin .cache/sample-repo .cache/dev-tls
