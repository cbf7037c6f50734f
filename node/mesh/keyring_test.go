package mesh

import (
	"bytes"
	"testing"
	"time"
)

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := testKey(1), testKey(100)
	nodes := cluster(t, "rot", 3, withKeys(oldKey))
	var events []<-chan Event
	for _, n := range nodes {
		ch, cancel := n.Subscribe()
		t.Cleanup(cancel)
		events = append(events, ch)
	}
	// stable checks that membership holds for several probe and push/pull
	// rounds after a step, so that traffic under the new keyring was
	// exchanged.
	stable := func(step string) {
		t.Helper()
		time.Sleep(3*fastProbe + 400*time.Millisecond)
		if msg := checkAllMembers(nodes); msg != "" {
			t.Fatalf("after %s: %s", step, msg)
		}
	}
	checkKeys := func(step string, wantPrimary []byte, want ...[]byte) {
		t.Helper()
		for _, n := range nodes {
			keys, primary, err := n.ListKeys()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(primary, wantPrimary) || len(keys) != len(want) || !bytes.Equal(keys[0], wantPrimary) {
				t.Fatalf("after %s: %s has %d keys, primary %x", step, n.cfg.NodeID, len(keys), primary[:2])
			}
			for _, w := range want {
				found := false
				for _, k := range keys {
					found = found || bytes.Equal(k, w)
				}
				if !found {
					t.Fatalf("after %s: %s lacks key %x", step, n.cfg.NodeID, w[:2])
				}
			}
		}
	}

	checkKeys("start", oldKey, oldKey)
	for _, n := range nodes {
		if err := n.InstallKey(newKey); err != nil {
			t.Fatal(err)
		}
	}
	checkKeys("install", oldKey, oldKey, newKey)
	stable("install")
	for _, n := range nodes {
		if err := n.UseKey(newKey); err != nil {
			t.Fatal(err)
		}
		// Mixed primaries while the switch goes round.
		time.Sleep(fastProbe)
	}
	checkKeys("use", newKey, oldKey, newKey)
	stable("use")
	for _, n := range nodes {
		if err := n.RemoveKey(oldKey); err != nil {
			t.Fatal(err)
		}
	}
	checkKeys("remove", newKey, newKey)
	stable("remove")
	for i, ch := range events {
		for len(ch) > 0 {
			if ev := <-ch; ev.Type == EventLeave {
				t.Errorf("%s saw %s leave during the rotation", nodes[i].cfg.NodeID, ev.Peer.ID)
			}
		}
	}

	// The old key no longer opens the cluster; the new one does.
	stale := newNode(t, "rot-stale", withKeys(oldKey))
	if _, err := stale.Join([]string{nodes[0].Addr()}); err == nil {
		t.Error("a node with the retired key joined")
	}
	fresh := newNode(t, "rot-fresh", withKeys(newKey))
	if _, err := fresh.Join([]string{nodes[1].Addr()}); err != nil {
		t.Fatalf("a node with the new key cannot join: %v", err)
	}
	all := append(nodes, fresh)
	waitFor(t, 10*time.Second, "membership with the new node", func() string { return checkAllAlive(all) })
}

func TestKeyringErrors(t *testing.T) {
	n := newNode(t, "keys", withKeys(testKey(1), testKey(2)))
	if err := n.RemoveKey(testKey(1)); err == nil {
		t.Error("removed the primary key")
	}
	if err := n.UseKey(testKey(3)); err == nil {
		t.Error("used a key that is not installed")
	}
	if err := n.InstallKey(make([]byte, 20)); err == nil {
		t.Error("installed a 20-byte key")
	}
	if err := n.RemoveKey(testKey(9)); err != nil {
		t.Errorf("removing an absent key: %v", err)
	}
	if err := n.InstallKey(testKey(2)); err != nil {
		t.Errorf("re-installing a key: %v", err)
	}
	keys, primary, err := n.ListKeys()
	if err != nil || len(keys) != 2 || !bytes.Equal(primary, testKey(1)) {
		t.Fatalf("ListKeys = %d keys, primary %x, %v", len(keys), primary, err)
	}
	keys[0][0]++
	primary[0]++
	if _, p, _ := n.ListKeys(); !bytes.Equal(p, testKey(1)) {
		t.Error("ListKeys returned the keyring's own slices")
	}
	// The caller's key slice is copied, not kept.
	k := testKey(4)
	if err := n.InstallKey(k); err != nil {
		t.Fatal(err)
	}
	k[0]++
	if err := n.UseKey(testKey(4)); err != nil {
		t.Errorf("installed key changed with the caller's slice: %v", err)
	}
}
