//go:build !noavx512

package quant

// avx512Off is false by default: the AVX-512 tiles run where the CPU has
// them (see useAVX512; -tags noavx512 turns them off).
const avx512Off = false
