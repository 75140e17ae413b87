// Package blockfile reads and writes the block files of a pool's cold tier.
//
// A block file is a self-describing header followed by the payload:
//
//	off  size  field
//	0    4     magic "SKVB"
//	4    2     format version (1)
//	6    2     header length in bytes (incl. the header CRC)
//	8    4     payload CRC-32C
//	12   4     token count
//	16   8     payload size
//	24   32    content hash
//	56   32    parent hash
//	88   2x4   layers, kv heads, head dim, tokens per block
//	96   1     dtype
//	97   1     model tag length n
//	98   n     model tag
//	98+n 4     CRC-32C of bytes [0, 98+n)
//
// All integers are little-endian. The header has its own CRC so that a torn or
// flipped header is detected before its sizes are trusted; the payload CRC is
// verified on every read. Files are written to a temporary name, fsynced and
// renamed, so a reader never sees a half-written file under a final name.
package blockfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// Magic starts every block file.
const Magic = "SKVB"

// Version is the format version written.
const Version = 1

const fixedLen = 98

// MaxHeaderLen bounds the header (fixed part, longest tag, CRC).
const MaxHeaderLen = fixedLen + kvspec.MaxModelTagLen + 4

// TmpSuffix marks files being written; any left at open are garbage.
const TmpSuffix = ".tmp"

// ErrCorrupt is wrapped by every error reporting a damaged file: bad magic,
// bad header CRC, payload CRC mismatch, short file, or a header that does not
// describe the block the caller expected.
var ErrCorrupt = errors.New("block file corrupt")

// Header describes the payload that follows it.
type Header struct {
	Checksum    uint32
	TokenCount  uint32
	PayloadSize uint64
	Hash        kvspec.Hash
	Parent      kvspec.Hash
	Spec        kvspec.Spec
}

// Encode appends the encoded header to dst.
func (h *Header) Encode(dst []byte) []byte {
	tag := h.Spec.ModelTag
	if len(tag) > kvspec.MaxModelTagLen {
		tag = tag[:kvspec.MaxModelTagLen]
	}
	n := fixedLen + len(tag) + 4
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	b := dst[start:]
	copy(b[0:4], Magic)
	binary.LittleEndian.PutUint16(b[4:], Version)
	binary.LittleEndian.PutUint16(b[6:], uint16(n))
	binary.LittleEndian.PutUint32(b[8:], h.Checksum)
	binary.LittleEndian.PutUint32(b[12:], h.TokenCount)
	binary.LittleEndian.PutUint64(b[16:], h.PayloadSize)
	copy(b[24:56], h.Hash[:])
	copy(b[56:88], h.Parent[:])
	binary.LittleEndian.PutUint16(b[88:], uint16(h.Spec.Layers))
	binary.LittleEndian.PutUint16(b[90:], uint16(h.Spec.KVHeads))
	binary.LittleEndian.PutUint16(b[92:], uint16(h.Spec.HeadDim))
	binary.LittleEndian.PutUint16(b[94:], uint16(h.Spec.TokensPerBlock))
	b[96] = byte(h.Spec.DType)
	b[97] = byte(len(tag))
	copy(b[fixedLen:], tag)
	binary.LittleEndian.PutUint32(b[fixedLen+len(tag):], kvspec.Checksum(b[:fixedLen+len(tag)]))
	return dst
}

// Decode parses a header from the start of b and returns it with its length.
// It never panics on any input; every failure wraps ErrCorrupt.
func Decode(b []byte) (Header, int, error) {
	var h Header
	if len(b) < fixedLen+4 {
		return h, 0, fmt.Errorf("%w: header truncated (%d bytes)", ErrCorrupt, len(b))
	}
	if string(b[0:4]) != Magic {
		return h, 0, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[0:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != Version {
		return h, 0, fmt.Errorf("%w: unsupported version %d", ErrCorrupt, v)
	}
	n := int(binary.LittleEndian.Uint16(b[6:]))
	tagLen := int(b[97])
	if tagLen > kvspec.MaxModelTagLen || n != fixedLen+tagLen+4 || len(b) < n {
		return h, 0, fmt.Errorf("%w: bad header length %d (tag %d, have %d)", ErrCorrupt, n, tagLen, len(b))
	}
	if got, want := kvspec.Checksum(b[:n-4]), binary.LittleEndian.Uint32(b[n-4:]); got != want {
		return h, 0, fmt.Errorf("%w: header checksum %08x != %08x", ErrCorrupt, got, want)
	}
	h.Checksum = binary.LittleEndian.Uint32(b[8:])
	h.TokenCount = binary.LittleEndian.Uint32(b[12:])
	h.PayloadSize = binary.LittleEndian.Uint64(b[16:])
	copy(h.Hash[:], b[24:56])
	copy(h.Parent[:], b[56:88])
	h.Spec.Layers = int(binary.LittleEndian.Uint16(b[88:]))
	h.Spec.KVHeads = int(binary.LittleEndian.Uint16(b[90:]))
	h.Spec.HeadDim = int(binary.LittleEndian.Uint16(b[92:]))
	h.Spec.TokensPerBlock = int(binary.LittleEndian.Uint16(b[94:]))
	h.Spec.DType = kvspec.DType(b[96])
	h.Spec.ModelTag = string(b[fixedLen : fixedLen+tagLen])
	if h.PayloadSize > kvspec.MaxBlockBytes {
		return h, 0, fmt.Errorf("%w: payload size %d too large", ErrCorrupt, h.PayloadSize)
	}
	return h, n, nil
}

// Write stores header and payload as dir/name: it writes dir/name.tmp, fsyncs
// it, renames it into place and fsyncs dir (unless noSync), so that the file
// is durable under its final name when Write returns and no partial file is
// ever visible under that name. On any error the temporary file is removed.
func Write(dir, name string, h *Header, payload []byte, noSync bool) (err error) {
	final := filepath.Join(dir, name)
	tmp := final + TmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	hdr := h.Encode(make([]byte, 0, MaxHeaderLen))
	// Two writes, not one concatenation: the payload can be megabytes and a
	// copy would double the memory traffic of every PutBlocks.
	if _, err = f.Write(hdr); err != nil {
		return err
	}
	if _, err = f.Write(payload); err != nil {
		return err
	}
	if !noSync {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, final); err != nil {
		return err
	}
	if !noSync {
		return SyncDir(dir)
	}
	return nil
}

// SyncDir fsyncs a directory so that renames and removals in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Read loads dir/name and verifies it: the header must decode, describe the
// expected hash, spec and size, and the payload must match both the header's
// CRC and wantChecksum. Any mismatch wraps ErrCorrupt (the caller treats the
// block as a miss); I/O errors are returned as they are.
func Read(dir, name string, wantHash kvspec.Hash, wantChecksum uint32, spec kvspec.Spec) (Header, []byte, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return Header{}, nil, err
	}
	defer f.Close()
	var hb [MaxHeaderLen]byte
	n, err := io.ReadFull(f, hb[:fixedLen])
	if err != nil {
		return Header{}, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	tagLen := int(hb[97])
	if tagLen > kvspec.MaxModelTagLen {
		return Header{}, nil, fmt.Errorf("%w: bad tag length %d", ErrCorrupt, tagLen)
	}
	if _, err := io.ReadFull(f, hb[n:fixedLen+tagLen+4]); err != nil {
		return Header{}, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	h, hl, err := Decode(hb[:fixedLen+tagLen+4])
	if err != nil {
		return h, nil, err
	}
	_ = hl
	if h.Hash != wantHash || h.Checksum != wantChecksum || h.Spec != spec || h.PayloadSize != uint64(spec.BlockBytes()) {
		return h, nil, fmt.Errorf("%w: header does not describe the expected block", ErrCorrupt)
	}
	payload := make([]byte, h.PayloadSize)
	if _, err := io.ReadFull(f, payload); err != nil {
		return h, nil, fmt.Errorf("%w: payload: %v", ErrCorrupt, err)
	}
	if got := kvspec.Checksum(payload); got != h.Checksum {
		return h, nil, fmt.Errorf("%w: payload checksum %08x != %08x", ErrCorrupt, got, h.Checksum)
	}
	return h, payload, nil
}
