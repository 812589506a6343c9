package jobs

import "errors"

// Operator is the user id of an operator (ADMIN_TOKEN): it sees and acts on
// every user's jobs. It holds a control character, which no token's sub
// may (internal/auth refuses them), so no user can take it.
const Operator = "\x00operator"

// ErrOperatorCannotCreate is returned when an operator creates a job: a job
// always belongs to a user.
var ErrOperatorCannotCreate = errors.New("an operator cannot create jobs; a job belongs to a user")

// ownerScope is the store's owner for a user's request: nil (any user) for
// Operator.
func ownerScope(userID string) *string {
	if userID == Operator {
		return nil
	}
	return &userID
}
