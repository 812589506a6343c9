// Package models holds the GORM models jobhook stores and their enums.
package models
