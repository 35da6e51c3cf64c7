package cache

import "time"

// SetRedisBackoff shortens the L2 backoff after a Redis failure (1s..5s in
// production) so tests of Redis recovery run in milliseconds. Call it before
// the first Get.
func SetRedisBackoff[V any](t *Tiered[V], minBackoff, maxBackoff time.Duration) {
	t.health.min, t.health.max = minBackoff, maxBackoff
}

// Awaiting is how many fills of t are waiting for another replica's claim.
func Awaiting[V any](t *Tiered[V]) int64 { return t.awaiting.Load() }
