package nixstore

// SetNixStoreProgram makes Load run prog as nix-store ("" never runs it) and
// returns a function that restores the previous program.
func SetNixStoreProgram(prog string) (restore func()) {
	saved := nixStoreProgram
	nixStoreProgram = prog
	return func() { nixStoreProgram = saved }
}
