// Command hyperfleet-ferretdb serves the MongoDB wire protocol on a SQLite directory, for tests on
// machines without mongod.
//
// It wraps FerretDB's embeddable package for two reasons:
//   - as the main module, FerretDB refuses to start without generated version files that its module
//     zip does not carry; as a dependency it starts;
//   - FerretDB v1 runs findAndModify and filtered updates as a read followed by a write (FerretDB
//     issue 2168), so two clients can both "atomically" reserve the same document. mongod cannot.
//     This wrapper puts FerretDB on a private Unix socket and serves clients through a proxy that runs
//     one command at a time, which makes every command atomic with respect to the others, as the
//     job protocol (and mongod) require.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

const (
	opMsg         = 2013
	moreToComeBit = 1 << 1
	maxMessage    = 48 << 20
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite directory URI (must end with /)")
	postgresqlURL := flag.String("postgresql-url", "", "PostgreSQL URL; when set, the PostgreSQL backend is used instead of SQLite")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail("bad --log-level %q: %v", *logLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	sockDir, err := os.MkdirTemp("", "hyperfleet-ferretdb-")
	if err != nil {
		fail("%v", err)
	}
	defer os.RemoveAll(sockDir)
	backendSock := filepath.Join(sockDir, "ferretdb.sock")

	config := &ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: backendSock},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
	}
	if *postgresqlURL != "" {
		config.Handler, config.PostgreSQLURL = "postgresql", *postgresqlURL
	}
	server, err := ferretdb.New(config)
	if err != nil {
		fail("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		if err := server.Run(ctx); err != nil {
			logger.Error("ferretdb stopped", "error", err)
		}
		stop()
	}()
	if err := waitForSocket(backendSock, 30*time.Second); err != nil {
		fail("%v", err)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fail("%v", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()

	var oneAtATime sync.Mutex
	for {
		client, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			logger.Error("accept", "error", err)
			continue
		}
		go serve(client, backendSock, &oneAtATime, logger)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "hyperfleet-ferretdb: "+format+"\n", args...)
	os.Exit(1)
}

func waitForSocket(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", path); err == nil {
			return c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("ferretdb did not open %s within %s", path, timeout)
}

// serve relays one client connection. Each request and its reply pass while holding the lock, so
// no two commands from any clients overlap inside FerretDB.
func serve(client net.Conn, backendSock string, lock *sync.Mutex, logger *slog.Logger) {
	defer client.Close()
	backend, err := net.Dial("unix", backendSock)
	if err != nil {
		logger.Error("dial ferretdb", "error", err)
		return
	}
	defer backend.Close()

	for {
		request, err := readMessage(client)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				logger.Debug("read request", "error", err)
			}
			return
		}
		if err := relay(request, client, backend, lock); err != nil {
			logger.Debug("relay", "error", err)
			return
		}
	}
}

func relay(request []byte, client, backend net.Conn, lock *sync.Mutex) error {
	lock.Lock()
	defer lock.Unlock()
	if _, err := backend.Write(request); err != nil {
		return err
	}
	if !expectsReply(request) {
		return nil
	}
	reply, err := readMessage(backend)
	if err != nil {
		return err
	}
	_, err = client.Write(reply)
	return err
}

// expectsReply is false only for OP_MSG requests with the moreToCome flag (unacknowledged writes).
func expectsReply(msg []byte) bool {
	opCode := binary.LittleEndian.Uint32(msg[12:16])
	if opCode == opMsg && len(msg) >= 20 {
		return binary.LittleEndian.Uint32(msg[16:20])&moreToComeBit == 0
	}
	return true
}

func readMessage(r io.Reader) ([]byte, error) {
	var header [16]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	length := binary.LittleEndian.Uint32(header[0:4])
	if length < 16 || length > maxMessage {
		return nil, fmt.Errorf("bad message length %d", length)
	}
	msg := make([]byte, length)
	copy(msg, header[:])
	if _, err := io.ReadFull(r, msg[16:]); err != nil {
		return nil, err
	}
	return msg, nil
}
