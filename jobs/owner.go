package jobs

import (
	"errors"

	"gorm.io/gorm"
)

// Operator is the user id of an operator (ADMIN_TOKEN): it sees and acts on
// every user's jobs. It holds a control character, which no token's sub
// may (internal/auth refuses them), so no user can take it.
const Operator = "\x00operator"

// ErrOperatorCannotCreate is returned when an operator creates a job: a job
// always belongs to a user.
var ErrOperatorCannotCreate = errors.New("an operator cannot create jobs; a job belongs to a user")

// ownedBy scopes a query to a user's jobs, or to every job for Operator.
func ownedBy(userID string) func(*gorm.DB) *gorm.DB {
	return func(q *gorm.DB) *gorm.DB {
		if userID == Operator {
			return q
		}
		return q.Where("user_id = ?", userID)
	}
}

// ownerScope is the store's owner for a user's request: nil (any user) for
// Operator.
func ownerScope(userID string) *string {
	if userID == Operator {
		return nil
	}
	return &userID
}
