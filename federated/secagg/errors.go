package secagg

import "errors"

// Errors callers check. Every error the package returns wraps one of these
// (or ErrInvalidConfig) with context saying what was wrong.
var (
	// ErrMalformed: a message could not be decoded or its fields are
	// inconsistent (bad lengths, unsorted or duplicate ids, out-of-range
	// values).
	ErrMalformed = errors.New("secagg: malformed message")
	// ErrWrongRound: a method or message belongs to another round than
	// the one the party is in.
	ErrWrongRound = errors.New("secagg: wrong round")
	// ErrUnknownClient: a message names a client id that is not a
	// participant of this round (or not a neighbour, or not addressed to
	// this client).
	ErrUnknownClient = errors.New("secagg: unknown client")
	// ErrDuplicate: a second message from the same client in one round.
	ErrDuplicate = errors.New("secagg: duplicate message")
	// ErrTooFewClients: fewer than Threshold clients remain; the
	// aggregation cannot go on without risking privacy, so it aborts
	// (except from Server.Finish, which may be retried after more
	// answers arrive).
	ErrTooFewClients = errors.New("secagg: fewer clients than the threshold")
	// ErrDecrypt: a share ciphertext failed authentication (tampered, or
	// addressed to another pair or session).
	ErrDecrypt = errors.New("secagg: share ciphertext failed authentication")
	// ErrReconstruct: a secret rebuilt from shares does not match what its
	// owner committed to (a corrupted share).
	ErrReconstruct = errors.New("secagg: reconstructed secret does not match its commitment")
	// ErrAborted: the party aborted earlier and takes no further part.
	ErrAborted = errors.New("secagg: aggregation aborted")
	// ErrInvalidInput: the caller's input vector is unusable (wrong
	// length, NaN or infinite coordinates). Such errors do not abort.
	ErrInvalidInput = errors.New("secagg: invalid input vector")
)
