package jetstream_test

func runRelayProcess() error { return nil }
