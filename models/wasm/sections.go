package wasm

import "errors"

var errLEB = errors.New("bad LEB128")

// declaredMemoryMax returns the maximum, in pages, that the module's own
// memory declares, if it declares one. wazero clamps a declared maximum to
// the runtime's limit, so the module bytes are read directly. It reads only
// the section headers and the memory section of a module that has already
// compiled; on anything unexpected it reports no maximum.
func declaredMemoryMax(wasm []byte) (uint32, bool) {
	if len(wasm) < 8 {
		return 0, false
	}
	b := wasm[8:]
	for len(b) > 0 {
		id := b[0]
		size, n, err := uleb(b[1:])
		if err != nil || uint64(len(b)-1-n) < size {
			return 0, false
		}
		body := b[1+n : 1+n+int(size)]
		b = b[1+n+int(size):]
		if id != 5 { // memory section
			continue
		}
		count, n, err := uleb(body)
		if err != nil || count == 0 || len(body) <= n {
			return 0, false
		}
		body = body[n:]
		flags := body[0]
		_, n, err = uleb(body[1:]) // min
		if err != nil || flags&1 == 0 {
			return 0, false
		}
		mx, _, err := uleb(body[1+n:])
		if err != nil || mx > 1<<32-1 {
			return 0, false
		}
		return uint32(mx), true
	}
	return 0, false
}

// uleb decodes an unsigned LEB128 number of at most 64 bits.
func uleb(b []byte) (v uint64, n int, err error) {
	var shift uint
	for i, c := range b {
		if shift >= 64 {
			return 0, 0, errLEB
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
		shift += 7
	}
	return 0, 0, errLEB
}
