// Package storetest is the behavioural test suite every store.Store implementation must
// pass: absent keys, the changed/unchanged/error outcomes of Update, copy isolation,
// deletion, cancellation and exact results under 64 concurrent writers. Each
// implementation's tests call Run with a constructor.
package storetest
