// Command ferretdb-termsync runs FerretDB, a MongoDB-wire server, for termsync's tests and
// benchmarks: the MongoDB backend is proven over the wire against it (docs/deployment.md).
//
// It embeds FerretDB's public package (github.com/FerretDB/FerretDB/ferretdb), because the
// module's own command needs generated version files that its module zip lacks. It prints the
// MongoDB URI it listens on, one line, once it accepts connections, and stops on SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on (port 0: any free port)")
	sqlite := flag.String("sqlite", "", "directory of the SQLite backend (one file per database)")
	postgresql := flag.String("postgresql", "", "URL of the PostgreSQL backend (postgres://...)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	if (*sqlite == "") == (*postgresql == "") {
		fmt.Fprintln(os.Stderr, "ferretdb-termsync: give exactly one of -sqlite DIR or -postgresql URL")
		os.Exit(2)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-termsync: -log-level: %s\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	config := ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: *listen}, Logger: logger}
	if *sqlite != "" {
		directory, err := filepath.Abs(*sqlite)
		if err == nil {
			err = os.MkdirAll(directory, 0o700)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "ferretdb-termsync: -sqlite: %s\n", err)
			os.Exit(1)
		}
		config.Handler = "sqlite"
		// FerretDB wants a file: URI naming a directory, with its trailing slash.
		config.SQLiteURL = "file:" + directory + "/"
	} else {
		config.Handler = "postgresql"
		config.PostgreSQLURL = *postgresql
	}

	server, err := ferretdb.New(&config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-termsync: %s\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	done := make(chan struct{})
	go func() {
		_ = server.Run(ctx)
		close(done)
	}()

	// MongoDBURI waits for the listener, which Run opens; announce the URI only once a
	// connection is accepted, so that whoever reads it can connect at once.
	uri := server.MongoDBURI()
	address := uri[len("mongodb://") : len(uri)-1]
	for deadline := time.Now().Add(30 * time.Second); ; {
		connection, err := net.DialTimeout("tcp", address, time.Second)
		if err == nil {
			connection.Close()
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "ferretdb-termsync: not accepting connections at %s: %s\n", address, err)
			os.Exit(1)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Println(uri)

	<-done
}
