package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestClusterSurvivesStreamLeaderLoss(t *testing.T) {
	c := StartCluster(t, 3)
	c.CreateStream(t, 3)
	js := c.JetStream(t, natsauth.RoleLedger)
	publishUntilStored(t, js, "event-1")

	leader := c.WaitStreamLeader(t, natsauth.DefaultStream)
	i := c.IndexOf(leader)
	stopped := time.Now()
	c.StopServer(i)
	if c.Servers()[i] != nil {
		t.Fatal("stopped node still listed")
	}
	publishUntilStored(t, js, "event-2")
	t.Logf("publish accepted %s after stopping the stream leader", time.Since(stopped).Round(time.Millisecond))
	if newLeader := c.StreamLeader(natsauth.DefaultStream); newLeader == nil || newLeader == leader {
		t.Fatalf("no new stream leader after failover")
	}

	c.RestartServer(t, i)
	srv := c.Servers()[i]
	waitFor(t, "the restarted node to catch up on the stream", func() bool {
		return srv.JetStreamIsStreamCurrent("$G", natsauth.DefaultStream)
	})
	assertClusterMessages(t, c, 2)
}

// publishUntilStored retries a publish until the cluster acknowledges it.
// The message ID makes retries idempotent: an attempt that timed out but was
// stored is not stored twice.
func publishUntilStored(t *testing.T, js jetstream.JetStream, id string) {
	t.Helper()
	deadline := time.Now().Add(clusterTimeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		_, err := js.Publish(ctx, "licenses.org.acme", []byte(id), jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s not acknowledged within %s: %v", id, clusterTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func assertClusterMessages(t *testing.T, c *Cluster, want uint64) {
	t.Helper()
	js := c.JetStream(t, natsauth.RoleReader)
	stream, err := js.Stream(testContext(t), natsauth.DefaultStream)
	if err != nil {
		t.Fatalf("reader stream info: %v", err)
	}
	info := stream.CachedInfo()
	if info.State.Msgs != want {
		t.Fatalf("stream has %d messages, want %d", info.State.Msgs, want)
	}
	if got := len(info.Cluster.Replicas) + 1; got != 3 {
		t.Fatalf("stream has %d replicas, want 3", got)
	}
}

func TestClusterAuthRequiredOnEveryNode(t *testing.T) {
	c := StartCluster(t, 3)
	for i, srv := range c.Servers() {
		url := fmt.Sprintf("nats://%s", srv.Addr())
		if _, err := nats.Connect(url, nats.NoReconnect()); err == nil {
			t.Errorf("node %d accepted an anonymous client", i)
		}
	}
	if c.Connect(t, natsauth.RoleReader).ConnectedUrl() == "" {
		t.Fatal("reader not connected")
	}
}
