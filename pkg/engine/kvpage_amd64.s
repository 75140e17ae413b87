//go:build !purego

#include "textflag.h"

// func prefetchRunsAsm(rows int, p *byte, stride, span int)
//
// PREFETCHT0 every 64-byte line of each run: the run's first byte, then
// every 64 bytes up to its last byte (which is prefetched too, so a run that
// straddles one more line than span/64 is covered).
TEXT ·prefetchRunsAsm(SB), NOSPLIT, $0-32
	MOVQ rows+0(FP), CX
	MOVQ p+8(FP), SI
	MOVQ stride+16(FP), DX
	MOVQ span+24(FP), BX
	DECQ BX

row:
	XORQ AX, AX

line:
	PREFETCHT0 (SI)(AX*1)
	ADDQ       $64, AX
	CMPQ       AX, BX
	JLT        line
	PREFETCHT0 (SI)(BX*1)
	ADDQ       DX, SI
	DECQ       CX
	JNZ        row
	RET
