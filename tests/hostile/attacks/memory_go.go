// attack: Go runs without an address-space limit: grow slices to 6 GiB, written
// expect: limit=memory
package main

import "testing"

func TestHog(t *testing.T) {
	var keep [][]byte
	for i := 0; i < 96; i++ {
		block := make([]byte, 64<<20)
		for at := 0; at < len(block); at += 4096 {
			block[at] = 1
		}
		keep = append(keep, block)
	}
	t.Log(len(keep))
}
