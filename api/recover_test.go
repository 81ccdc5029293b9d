package api

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestHandlerPanicAnsweredInternal: a handler that panics answers its call INTERNAL, is
// counted, and the server serves on.
func TestHandlerPanicAnsweredInternal(t *testing.T) {
	m := NewMetrics()
	srv := newServer(&Service{metrics: m}, []grpc.ServerOption{grpc.UnknownServiceHandler(
		func(any, grpc.ServerStream) error { panic("a bug") })})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 { // the server is still there for the second call
		err := conn.Invoke(ctx, "/test.Broken/Call", &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.Internal {
			t.Fatalf("a panicking handler answered %v", err)
		}
	}
	if n := testutil.ToFloat64(m.panics.WithLabelValues("/test.Broken/Call")); n != 2 {
		t.Errorf("ledger_grpc_panics_total %v, want 2", n)
	}
}
