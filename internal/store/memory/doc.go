// Package memory is an in-process store.Store: a mutex-guarded map with the same
// semantics as the durable stores (fn sees a private copy, an error changes nothing),
// for tests and for throwaway emulation where nothing must survive a restart.
package memory
