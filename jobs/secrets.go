package jobs

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/jobhook/jobhook/jobs/secretfields"
	"github.com/jobhook/jobhook/models"
)

// Secret payload fields
//
// A handler marks payload fields secret by implementing SecretFielder. For
// a job of such a type:
//
//   - Service.Create seals each secret value (with the keyring in
//     Config.Secrets, AES-256-GCM) before the insert and stores it
//     in its place as {"$secret":"v1.<kid>.<base64url>"}; the database
//     never holds the plaintext. The sealed value is bound to the job's
//     user, type and field, so it cannot be moved to another job or field.
//   - Every job the Service returns (Create, Get, List, Cancel, Reschedule,
//     Retry) carries "[redacted]" in place of each secret value: neither
//     the plaintext nor the ciphertext.
//   - The worker opens the sealed values into a copy of the job handed to
//     the handler (the row keeps the ciphertext). A value that does not
//     open fails the job for good, with a message that names the field.
//   - The worker replaces any secret value in a handler's error text with
//     "[redacted]" before the error is stored on the job, written to its
//     attempt history or logged.
//
// The mechanics (path syntax, the walk, seal, open, redact, scrub) are in
// package secretfields; the engine calls them with the keyring as a
// secretfields.Sealer. For a list[].name path whose container has the
// wrong shape, Create refuses the payload with a *ValidationError naming
// the field.
//
// A type that declares secret fields cannot be created without a keyring
// (Config.Secrets): Create returns ErrSecretsUnconfigured and
// stores nothing. There is no plaintext fallback, in development either.

// SecretFielder is implemented by handlers whose payloads carry secrets,
// such as a social network access token. SecretFields returns the secret
// field paths, "name" or "list[].name" (the syntax is in package
// secretfields); it must return the same paths every time.
type SecretFielder interface {
	SecretFields() []string
}

// ErrSecretsUnconfigured is returned by Service.Create for a job type with
// secret payload fields when no encryption keyring (JOBS_ENCRYPTION_KEY)
// is configured. It is a server misconfiguration, not a bad request:
// nothing is stored.
var ErrSecretsUnconfigured = errors.New("job type has secret payload fields but no encryption key is configured (JOBS_ENCRYPTION_KEY)")

// secretFieldsOf returns the parsed secret paths a handler declares; none
// when it is not a SecretFielder.
func secretFieldsOf(h Handler) (secretfields.Fields, error) {
	sf, ok := h.(SecretFielder)
	if !ok {
		return secretfields.Fields{}, nil
	}
	return secretfields.Parse(sf.SecretFields())
}

// secretFieldsFor returns the secret paths of a job type; none for an
// unknown type.
func secretFieldsFor(reg *Registry, jobType string) (secretfields.Fields, error) {
	if reg == nil {
		return secretfields.Fields{}, nil
	}
	h, ok := reg.Lookup(jobType)
	if !ok {
		return secretfields.Fields{}, nil
	}
	fields, err := secretFieldsOf(h)
	if err != nil {
		return secretfields.Fields{}, fmt.Errorf("job type %q: %w", jobType, err)
	}
	return fields, nil
}

// CheckSecretFields checks the secret field paths of every registered type
// and returns the types that declare any, sorted. Call it at start-up:
// when it returns types and no keyring is configured, those types cannot
// be created (ErrSecretsUnconfigured).
func CheckSecretFields(reg *Registry) ([]string, error) {
	var types []string
	for _, typ := range reg.Types() {
		fields, err := secretFieldsFor(reg, typ)
		if err != nil {
			return nil, err
		}
		if !fields.Empty() {
			types = append(types, typ)
		}
	}
	return types, nil
}

// configuredSealer returns s, or nil when no keyring is configured: s is
// nil, or a nil pointer such as a nil *secretbox.Keyring (what a caller
// without JOBS_ENCRYPTION_KEY holds).
func configuredSealer(s secretfields.Sealer) secretfields.Sealer {
	if s == nil {
		return nil
	}
	if v := reflect.ValueOf(s); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	return s
}

// errNoKeyring is why a sealed value cannot be opened by a worker without
// a keyring.
var errNoKeyring = errors.New("no encryption key is configured (JOBS_ENCRYPTION_KEY)")

// noKeyring stands in for a missing keyring: nothing seals or opens.
type noKeyring struct{}

func (noKeyring) Seal([]byte, []byte) (string, error) { return "", ErrSecretsUnconfigured }
func (noKeyring) Open(string, []byte) ([]byte, error) { return nil, errNoKeyring }

// sealSecrets replaces each secret value of the request's payload with its
// sealed wrapper. It runs after Validate (which sees the plaintext) and
// before the insert.
func (s *Service) sealSecrets(req *CreateRequest) error {
	fields, err := secretFieldsFor(s.cfg.Registry, req.Type)
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	if fields.Empty() {
		return nil
	}
	sealer := configuredSealer(s.cfg.Secrets)
	if sealer == nil {
		return fmt.Errorf("create job of type %q: %w", req.Type, ErrSecretsUnconfigured)
	}
	out, err := fields.Seal(sealer, secretfields.Binding{UserID: req.UserID, JobType: req.Type}, req.Payload)
	var se *secretfields.ShapeError
	if errors.As(err, &se) {
		return invalid("invalid_payload", se.Loc, "%s (it holds secret fields)", se.Error())
	}
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	req.Payload = out
	return nil
}

// scrubValidation removes the request's secret values from a validation
// error's messages (a payload validator may quote the value it refuses).
func (s *Service) scrubValidation(req CreateRequest, err error) error {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	fields, perr := secretFieldsFor(s.cfg.Registry, req.Type)
	if perr != nil || fields.Empty() {
		return err
	}
	secrets := fields.Values(req.Payload)
	if len(secrets) == 0 {
		return err
	}
	out := &ValidationError{Code: ve.Code, Message: scrub(ve.Message, secrets)}
	for _, f := range ve.Fields {
		out.Fields = append(out.Fields, FieldError{Field: scrub(f.Field, secrets), Message: scrub(f.Message, secrets)})
	}
	return out
}

// redact replaces the secret values of a job about to be returned with
// "[redacted]", by its type's secret paths (whether the stored value is
// sealed or not), and any sealed wrapper elsewhere in the payload too (a
// type that no longer declares the field). When the payload cannot be
// read, all of it is redacted. It changes job in place and returns it.
func (s *Service) redact(job *models.Job) *models.Job {
	if job == nil {
		return nil
	}
	job.Payload = models.JSON(redactPayload(s.cfg.Registry, job.Type, job.Payload))
	return job
}

func redactPayload(reg *Registry, jobType string, payload []byte) []byte {
	fields, err := secretFieldsFor(reg, jobType)
	if err != nil {
		return secretfields.RedactAll(payload)
	}
	return fields.Redact(payload)
}

// decryptSecrets returns the job to hand to its handler: a copy whose
// payload holds the opened secret values, or job itself when its type has
// none. A value that cannot be opened is a permanent error naming the
// field (never the value). A secret field stored unsealed (a job created
// before its type declared the field) is passed on as it is, with a
// warning.
func (w *Worker) decryptSecrets(job *models.Job) (*models.Job, error) {
	fields, err := secretFieldsFor(w.cfg.Registry, job.Type)
	if err != nil {
		return job, Permanent(err)
	}
	if fields.Empty() {
		return job, nil
	}
	var sealer secretfields.Sealer = noKeyring{}
	if s := configuredSealer(w.cfg.Secrets); s != nil {
		sealer = s
	}
	out, unsealed, err := fields.Open(sealer, secretfields.Binding{UserID: job.UserID, JobType: job.Type}, job.Payload)
	for _, loc := range unsealed {
		w.log.Warn("secret payload field is stored unencrypted", "job_id", job.ID, "type", job.Type, "field", loc)
	}
	var se *secretfields.ShapeError
	if errors.As(err, &se) {
		return job, Permanent(fmt.Errorf("payload field %s (it holds secret fields)", se.Error()))
	}
	if err != nil {
		return job, Permanent(err)
	}
	cp := *job
	cp.Payload = models.JSON(out)
	return &cp, nil
}

// secretValuesOf returns the secret strings in the payload of the job a
// handler ran with, to scrub from its error.
func (w *Worker) secretValuesOf(job *models.Job) []string {
	fields, err := secretFieldsFor(w.cfg.Registry, job.Type)
	if err != nil || fields.Empty() {
		return nil
	}
	return fields.Values(job.Payload)
}

// scrub is secretfields.Scrub, under the name the worker's and the
// Service's call sites use.
func scrub(text string, secrets []string) string { return secretfields.Scrub(text, secrets) }
