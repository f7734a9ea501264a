// Package ioctx stops long copies when a context ends.
package ioctx

import (
	"context"
	"io"
)

// Reader returns a reader of r that fails with the context's error once ctx
// is done, so an io.Copy from it stops at the next read.
func Reader(ctx context.Context, r io.Reader) io.Reader {
	return reader{ctx, r}
}

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (r reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
