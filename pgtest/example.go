package pgtest

import (
	"context"
	"errors"
	"os"
)

// ForExample returns a database for a runnable example: DATABASE_URL if it
// is set (used as it is), and otherwise a fresh database, with mire's schema,
// on a throwaway server. stop drops the database and stops the server.
func ForExample(ctx context.Context) (dbURL string, stop func(), err error) {
	if u := os.Getenv(EnvDatabase); u != "" {
		return u, func() {}, nil
	}
	srv, err := StartThrowaway(ctx, nil)
	if err != nil {
		return "", nil, err
	}
	dbURL, drop, err := NewDatabase(ctx, srv.URL())
	if err != nil {
		return "", nil, errors.Join(err, srv.Stop())
	}
	return dbURL, func() {
		_ = drop(context.Background())
		_ = srv.Stop()
	}, nil
}
