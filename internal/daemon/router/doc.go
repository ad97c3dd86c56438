// Package router chooses, for every request, the backend that serves its device:
// it classifies the received descriptor (package device), tries the configuration's
// rules in order (first match wins), falls back to the default backend, and gives
// the backend the logical unit's identity (the rule's id=, else the device's).
//
// Decide is pure, so --explain and the tests see exactly what a request would get.
package router
