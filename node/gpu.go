package node

import (
	"errors"
	"fmt"

	"github.com/petrel-mesh/petrel/models"
)

// GPU defaults. A GPU runs a batch of 256 rows in about the time it runs
// one, so GPU versions batch more than the CPU's 64 by default; two
// concurrent executions let one's host-device copies overlap the other's
// kernels, while more only queue on the device.
const (
	GPUMaxBatchSize = 256
	GPUConcurrency  = 2
	// MinGPUFootprint is the least GPU memory a CUDA session is accounted
	// without an arena limit: the CUDA context's per-session workspace and
	// cuDNN/cuBLAS scratch come on top of the weights.
	MinGPUFootprint = 256 << 20
)

// ErrGPUMemory is returned when a version's GPU memory does not fit the
// node's Config.GPUMemoryBytes beside the versions that cannot be evicted.
var ErrGPUMemory = errors.New("not enough GPU memory")

// GPUFootprint is the GPU memory a CUDA session of a model of size bytes
// is accounted: its arena limit (gpu_mem_limit) when it has one, which
// ONNX Runtime enforces; otherwise an estimate of four times the model
// (weights, activations, workspace) and at least MinGPUFootprint. Setting
// gpu_mem_limit makes the accounting exact.
func GPUFootprint(limit, size int64) int64 {
	if limit > 0 {
		return limit
	}
	return max(4*size, MinGPUFootprint)
}

// providerNote is why a session runs on another provider than the one
// asked for ("" when it does not, or the session cannot say).
func providerNote(s models.Session) string {
	if n, ok := s.(interface{ ProviderNote() string }); ok {
		return n.ProviderNote()
	}
	return ""
}

// checkGPUBudget refuses v when its GPU memory and that of the loaded
// versions that cannot be evicted (not acquired) exceed GPUMemoryBytes.
// Acquired versions are not counted: evictLocked makes room by evicting
// them once v is installed. What v replaces is not counted either: a
// loaded version with v's name and version, or, during a repository load
// of v's model, every loaded version of that model (counted instead are
// the versions of the load so far). Callers hold loadMu, not mu.
func (m *manager) checkGPUBudget(v *version) error {
	limit := m.n.cfg.GPUMemoryBytes
	if limit <= 0 || v.gpuBytes == 0 {
		return nil
	}
	reloading := m.gpuLoading.name == v.manifest.Name
	pinned := int64(0)
	if reloading {
		pinned = m.gpuLoading.bytes
	}
	m.mu.RLock()
	for _, e := range m.models {
		for _, o := range e.versions {
			if o.acquired || o.manifest.Name == v.manifest.Name && (reloading || o.manifest.Version == v.manifest.Version) {
				continue
			}
			pinned += o.gpuBytes
		}
	}
	m.mu.RUnlock()
	if pinned+v.gpuBytes > limit {
		return fmt.Errorf("%w: the version needs %d bytes on the GPU, %d of the node's %d (gpu_memory_bytes) are held by versions that cannot be evicted",
			ErrGPUMemory, v.gpuBytes, pinned, limit)
	}
	return nil
}
