package pgtest

// Dir returns the temporary directory of a throwaway server.
func (s *Server) Dir() string { return s.dir }

// OwnerFile is the file in a server's directory naming its owner process.
const OwnerFile = ownerFile

// ProcessAlive reports whether a process with this id is running.
var ProcessAlive = processAlive

// ReplayTarget is replayTarget.
var ReplayTarget = replayTarget
