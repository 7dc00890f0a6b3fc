// Command testing shows how to spec an application built on mire, with
// package miretest: its specs (go test ./examples/testing) run an
// account's commands without a database, given past events, and its
// command handler against a real one. The program itself runs the
// commands once. It starts a throwaway Postgres unless DATABASE_URL is
// set.
//
//	go run ./examples/testing
//	go test ./examples/testing
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
)

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	url, stop, err := pgtest.ForExample(ctx)
	if err != nil {
		return err
	}
	defer stop()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	mire.ConfigurePool(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := mire.New(pool, nil)
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}

	id := "ann-" + uuid.NewString()[:8]
	steps := []struct {
		name    string
		command func(*mire.Root[Account]) error
	}{
		{"open", func(acc *mire.Root[Account]) error { return Open(acc, "Ann") }},
		{"deposit 100", func(acc *mire.Root[Account]) error { return Deposit(acc, 100) }},
		{"withdraw 30", func(acc *mire.Root[Account]) error { return Withdraw(acc, 30) }},
		{"withdraw 100", func(acc *mire.Root[Account]) error { return Withdraw(acc, 100) }},
	}
	for _, step := range steps {
		acc, err := Handle(ctx, store, id, step.command)
		if err != nil {
			fmt.Printf("%s: refused: %v\n", step.name, err)
			continue
		}
		fmt.Printf("%s: balance %d at version %d\n", step.name, acc.State.Balance, acc.Version)
	}
	return nil
}
