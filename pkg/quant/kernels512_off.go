//go:build noavx512

package quant

// avx512Off: built with -tags noavx512, the AVX-512 tiles stay off by
// default (benchmark comparisons; see useAVX512).
const avx512Off = true
