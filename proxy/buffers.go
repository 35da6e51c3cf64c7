package proxy

import "sync"

// bufferPool is ReverseProxy's copy buffer, reused: without one, every
// proxied response allocates 32 KiB, which dominates the bytes a proxy
// allocates and so how often the garbage collector runs.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

// Get implements httputil.BufferPool.
func (bp *bufferPool) Get() []byte { return bp.p.Get().(*[copyBufferSize]byte)[:] }

// Put implements httputil.BufferPool. Buffers are pooled as array
// pointers, which a slice converts back to without allocating (a pooled
// *[]byte would cost an allocation per Put); a buffer of another size
// (none should come back) is dropped.
func (bp *bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	bp.p.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
}
