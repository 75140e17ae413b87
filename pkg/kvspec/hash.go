package kvspec

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
)

// HashSize is the length in bytes of a block content hash.
const HashSize = sha256.Size

// Hash names a block by its content: the tokens it holds and every token
// before them (through the parent hash), the model and the tenant salt. Two
// blocks with the same hash hold the same KV, so they can be shared between
// agents. The zero Hash is the parent of an agent's first block.
type Hash [HashSize]byte

// IsZero reports whether h is the zero hash (no parent).
func (h Hash) IsZero() bool { return h == Hash{} }

// String is the hex form of the first 8 bytes, for logs.
func (h Hash) String() string { return hex.EncodeToString(h[:8]) }

// HashFromBytes converts a wire hash, checking its length.
func HashFromBytes(b []byte) (Hash, error) {
	var h Hash
	if len(b) != HashSize {
		return h, fmt.Errorf("block hash must be %d bytes, got %d", HashSize, len(b))
	}
	copy(h[:], b)
	return h, nil
}

// ChainHash is the content hash of a block holding tokens whose predecessor
// block has hash parent (zero for the first block). It follows vLLM's chained
// prefix hash: hash(parent, tokens, extra keys), with the model tag and a
// per-tenant salt as the extra keys. Every field is length-prefixed so that no
// two different inputs share an encoding; a partial block (fewer tokens than a
// full one) therefore never collides with a full block.
func ChainHash(parent Hash, tokens []uint32, modelTag, salt string) Hash {
	d := sha256.New()
	var n [8]byte
	d.Write([]byte("semantic.kv.v1"))
	d.Write(parent[:])
	binary.LittleEndian.PutUint64(n[:], uint64(len(modelTag)))
	d.Write(n[:])
	d.Write([]byte(modelTag))
	binary.LittleEndian.PutUint64(n[:], uint64(len(salt)))
	d.Write(n[:])
	d.Write([]byte(salt))
	binary.LittleEndian.PutUint64(n[:], uint64(len(tokens)))
	d.Write(n[:])
	buf := make([]byte, 4*len(tokens))
	for i, t := range tokens {
		binary.LittleEndian.PutUint32(buf[4*i:], t)
	}
	d.Write(buf)
	var h Hash
	d.Sum(h[:0])
	return h
}

// ChainHashes returns the hashes of the blocks that hold tokens, block by
// block, tokensPerBlock tokens each. Only full blocks are hashed unless
// withTail is set, in which case a final partial block is hashed too.
func ChainHashes(tokens []uint32, tokensPerBlock int, modelTag, salt string, withTail bool) []Hash {
	var out []Hash
	var parent Hash
	for start := 0; start < len(tokens); start += tokensPerBlock {
		end := start + tokensPerBlock
		if end > len(tokens) {
			if !withTail {
				break
			}
			end = len(tokens)
		}
		parent = ChainHash(parent, tokens[start:end], modelTag, salt)
		out = append(out, parent)
	}
	return out
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C of a block payload. It is computed by the writer,
// verified by the pool on receipt, stored in the block file header and in the
// block's bbolt record, and verified again whenever the payload is read back.
func Checksum(payload []byte) uint32 { return crc32.Checksum(payload, castagnoli) }

// UpdateChecksum extends a running CRC-32C with p, for payloads received in chunks.
func UpdateChecksum(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }
