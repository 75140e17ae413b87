// Package storage is the bbolt schema of a block-pool node: the bucket names,
// the schema version, and typed accessors over the marshalled protobuf values
// of semantic.blockpool.storage.v1. Every bucket is named here and nowhere
// else.
package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	storagev1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/storage/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// SchemaVersion is the version of the layout below. Bump it and add a
// migration step in Open when the layout changes.
const SchemaVersion = 1

var (
	// BucketMeta holds one key, KeyMeta, whose value is a storagev1.Meta.
	BucketMeta = []byte("meta")
	// BucketAgents maps agent id -> storagev1.AgentValue.
	BucketAgents = []byte("agents")
	// BucketBlocks maps 32-byte content hash -> storagev1.BlockValue.
	BucketBlocks = []byte("blocks")

	// KeyMeta is the key of the meta value.
	KeyMeta = []byte("meta")
	// KeyAgentVersion (in BucketMeta) is the last agent record version the
	// node issued: 8 bytes big-endian. Versions come from this one per-node
	// counter so that they never repeat for an agent id, even across delete
	// and re-create or a restart.
	KeyAgentVersion = []byte("agent_version")
)

// MaxBatchDelay is how long db.Batch waits for more commits to share a transaction.
const MaxBatchDelay = 2 * time.Millisecond

// DB is an open pool database.
type DB struct {
	*bolt.DB
}

// Options tune Open.
type Options struct {
	// NoSync skips fsync on commit; for tests only, never the default.
	NoSync bool
}

// Open opens (creating if needed) the database at path, creates the buckets,
// refuses a newer schema, and returns it with its meta.
func Open(path string, opt Options) (*DB, *storagev1.Meta, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: opt.NoSync})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	meta := &storagev1.Meta{}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketMeta, BucketAgents, BucketBlocks} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		v := tx.Bucket(BucketMeta).Get(KeyMeta)
		if v == nil {
			meta.SchemaVersion = SchemaVersion
			return PutMeta(tx, meta)
		}
		if err := proto.Unmarshal(v, meta); err != nil {
			return fmt.Errorf("meta: %w", err)
		}
		if meta.SchemaVersion > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this binary's %d", meta.SchemaVersion, SchemaVersion)
		}
		// Migrations from older versions go here, one step per version.
		return nil
	})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	// bbolt's default 10ms is long for an interactive commit; 2ms still
	// gathers the commits that arrive during one fsync.
	db.MaxBatchDelay = MaxBatchDelay
	return &DB{db}, meta, nil
}

// PutMeta writes the meta value.
func PutMeta(tx *bolt.Tx, m *storagev1.Meta) error {
	return put(tx.Bucket(BucketMeta), KeyMeta, m)
}

// AgentVersion reads the last issued agent version (0 if none).
func AgentVersion(tx *bolt.Tx) uint64 {
	v := tx.Bucket(BucketMeta).Get(KeyAgentVersion)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// PutAgentVersion raises the stored last issued agent version to v; it never
// lowers it, so concurrent transactions cannot move it back.
func PutAgentVersion(tx *bolt.Tx, v uint64) error {
	if v <= AgentVersion(tx) {
		return nil
	}
	return tx.Bucket(BucketMeta).Put(KeyAgentVersion, binary.BigEndian.AppendUint64(nil, v))
}

// PutAgent writes an agent record.
func PutAgent(tx *bolt.Tx, a *storagev1.AgentValue) error {
	return put(tx.Bucket(BucketAgents), []byte(a.AgentId), a)
}

// DeleteAgent removes an agent record (no error if absent).
func DeleteAgent(tx *bolt.Tx, id string) error {
	return tx.Bucket(BucketAgents).Delete([]byte(id))
}

// PutBlock writes a block record.
func PutBlock(tx *bolt.Tx, hash []byte, b *storagev1.BlockValue) error {
	return put(tx.Bucket(BucketBlocks), hash, b)
}

// DeleteBlock removes a block record (no error if absent).
func DeleteBlock(tx *bolt.Tx, hash []byte) error {
	return tx.Bucket(BucketBlocks).Delete(hash)
}

// ErrBadValue wraps a value that does not unmarshal.
var ErrBadValue = errors.New("bad stored value")

// ForEachAgent calls fn with every agent record. The value is a fresh copy:
// nothing of the transaction's memory escapes.
func ForEachAgent(tx *bolt.Tx, fn func(*storagev1.AgentValue) error) error {
	return tx.Bucket(BucketAgents).ForEach(func(k, v []byte) error {
		a := &storagev1.AgentValue{}
		if err := proto.Unmarshal(v, a); err != nil {
			return fmt.Errorf("%w: agent %q: %v", ErrBadValue, k, err)
		}
		return fn(a)
	})
}

// ForEachBlock calls fn with every block record; hash is a copy.
func ForEachBlock(tx *bolt.Tx, fn func(hash []byte, b *storagev1.BlockValue) error) error {
	return tx.Bucket(BucketBlocks).ForEach(func(k, v []byte) error {
		b := &storagev1.BlockValue{}
		if err := proto.Unmarshal(v, b); err != nil {
			return fmt.Errorf("%w: block %x: %v", ErrBadValue, k, err)
		}
		return fn(append([]byte(nil), k...), b)
	})
}

func put(b *bolt.Bucket, k []byte, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}
