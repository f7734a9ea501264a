package nixstore

// Resolve follows every symbolic link in p, an absolute path in the store
// namespace (e.g. a file below the toplevel), within the closure's store
// root, and returns the resolved path in that namespace; HostPath gives
// where it is on this machine.
func (c *Closure) Resolve(p string) (string, error) { return resolveLogical(p, c.StoreRoot) }
