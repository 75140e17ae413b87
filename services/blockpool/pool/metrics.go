package pool

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// metrics are the pool's OpenTelemetry instruments. Hit and miss figures are
// counters (monotonic totals), never gauges overwritten per request, so that
// rates and ratios can be computed over any window.
type metrics struct {
	leasesGranted, leasesRenewed, leasesExpired, leasesReleased metric.Int64Counter
	leaseRefused                                                metric.Int64Counter
	evictions                                                   metric.Int64Counter
	lookupHitBlocks, lookupMissBlocks                           metric.Int64Counter
	lookupHitTokens, lookupMissTokens                           metric.Int64Counter
	bytesRead, bytesWritten                                     metric.Int64Counter
	checksumFailures                                            metric.Int64Counter
	lockWait                                                    metric.Float64Histogram
	commitLatency                                               metric.Float64Histogram
	reg                                                         metric.Registration
}

var (
	tierMemory = metric.WithAttributes(attribute.String("tier", "memory"))
	tierDisk   = metric.WithAttributes(attribute.String("tier", "disk"))
	tierSlots  = metric.WithAttributes(attribute.String("tier", "slots"))
)

// newMetrics creates the instruments and registers the gauges' callback. A
// failure to create or register any of them is returned (all of them,
// joined): a pool whose metrics silently do not exist is not one to run.
func newMetrics(mp metric.MeterProvider, p *Pool) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("github.com/semantic-kv/semantic/services/blockpool/pool")
	const pfx = "semantic.blockpool."
	var errs []error
	c := func(name, unit, desc string) metric.Int64Counter {
		x, err := m.Int64Counter(pfx+name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return x
	}
	h := func(name, desc string, bounds ...float64) metric.Float64Histogram {
		x, err := m.Float64Histogram(pfx+name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return x
	}
	g := func(name, unit, desc string) metric.Int64ObservableGauge {
		x, err := m.Int64ObservableGauge(pfx+name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return x
	}
	out := &metrics{
		leasesGranted:    c("leases.granted", "{lease}", "Leases granted."),
		leasesRenewed:    c("leases.renewed", "{lease}", "Lease renewals (keep-alives) accepted."),
		leasesExpired:    c("leases.expired", "{lease}", "Leases revoked because their TTL lapsed."),
		leasesReleased:   c("leases.released", "{lease}", "Leases released by their holder (commit or abort)."),
		leaseRefused:     c("leases.exhausted", "{lease}", "Lease requests refused because the pool was exhausted."),
		evictions:        c("evictions", "{block}", "Blocks evicted, by tier: memory (payload dropped, file kept), disk (block file removed), slots (cached block freed)."),
		lookupHitBlocks:  c("lookup.hit.blocks", "{block}", "Blocks found cached by lookups."),
		lookupMissBlocks: c("lookup.miss.blocks", "{block}", "Full blocks of lookups not found cached."),
		lookupHitTokens:  c("lookup.hit.tokens", "{token}", "Tokens found cached by lookups."),
		lookupMissTokens: c("lookup.miss.tokens", "{token}", "Tokens of lookups not found cached."),
		bytesRead:        c("bytes.read", "By", "Payload bytes read, by tier."),
		bytesWritten:     c("bytes.written", "By", "Payload bytes written, by tier."),
		checksumFailures: c("checksum.failures", "{block}", "Blocks whose stored payload failed its checksum (dropped, never served)."),
		lockWait: h("lock.wait", "Time spent waiting for the pool lock when it was contended.",
			1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2),
		commitLatency: h("bbolt.commit.latency", "Latency of a bbolt batch commit, fsync included.",
			1e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.5),
	}
	blocks := g("blocks", "{block}", "Blocks by state: free, leased, cached.")
	tierBytes := g("tier.bytes", "By", "Payload bytes held, by tier.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := p.Counts()
		o.ObserveInt64(blocks, int64(c.Free), metric.WithAttributes(attribute.String("state", "free")))
		o.ObserveInt64(blocks, int64(c.Leased), metric.WithAttributes(attribute.String("state", "leased")))
		o.ObserveInt64(blocks, int64(c.Cached), metric.WithAttributes(attribute.String("state", "cached")))
		o.ObserveInt64(tierBytes, c.MemoryBytes, tierMemory)
		o.ObserveInt64(tierBytes, c.DiskBytes, tierDisk)
		return nil
	}, blocks, tierBytes)
	if err != nil {
		return nil, err
	}
	out.reg = reg
	return out, nil
}

func since(t time.Time) float64 { return time.Since(t).Seconds() }
