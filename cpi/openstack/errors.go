package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/kpaas/kpaas/cpi"
)

// statusOf returns the HTTP status of an OpenStack API error, 0 for others.
func statusOf(err error) int {
	var ue gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &ue) {
		return ue.Actual
	}
	return 0
}

func isNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// apiMessage digs the human message out of an OpenStack error body
// ({"itemNotFound":{"message":...}}, {"NeutronError":{"message":...}},
// {"badRequest":{"message":...}}, {"overLimit":...}, {"error":{"message"}}).
func apiMessage(err error) string {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		return err.Error()
	}
	msg := findMessage(ue.Body)
	if msg == "" {
		msg = strings.TrimSpace(string(ue.Body))
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
	}
	return fmt.Sprintf("%s (HTTP %d from %s %s)", msg, ue.Actual, ue.Method, ue.URL)
}

func findMessage(body []byte) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	var walk func(any, int) string
	walk = func(v any, depth int) string {
		m, ok := v.(map[string]any)
		if !ok || depth > 3 {
			return ""
		}
		for _, k := range []string{"message", "detail", "title"} {
			if s, ok := m[k].(string); ok && s != "" {
				return s
			}
		}
		for _, sub := range m {
			if s := walk(sub, depth+1); s != "" {
				return s
			}
		}
		return ""
	}
	return walk(v, 0)
}

// transient reports a failure that may pass when the call is repeated.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch statusOf(err) {
	case 0:
		var ue gophercloud.ErrUnexpectedResponseCode
		return !errors.As(err, &ue) && !errors.Is(err, context.Canceled)
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusConflict:
		return true
	}
	return false
}

// quotaExceeded reports an error saying the project is out of quota.
func quotaExceeded(err error) bool {
	code := statusOf(err)
	if code != http.StatusForbidden && code != http.StatusRequestEntityTooLarge && code != http.StatusConflict && code != http.StatusBadRequest {
		return false
	}
	m := strings.ToLower(apiMessage(err))
	return strings.Contains(m, "quota") || strings.Contains(m, "exceeded") && strings.Contains(m, "limit")
}

// cloudErr builds the CloudError for a failed step: what was done, what the
// API said, and what to do.
func cloudErr(op string, err error, hint string, retry bool) *cpi.Error {
	return typedErr(cpi.TypeCloudError, op, err, hint, retry)
}

func typedErr(typ, op string, err error, hint string, retry bool) *cpi.Error {
	msg := op
	if err != nil {
		msg += ": " + apiMessage(err)
	}
	if hint != "" {
		msg += "; " + hint
	}
	return &cpi.Error{Type: typ, Message: msg, OkToRetry: retry, Err: err}
}

// apiErr classifies a failed API call on an object into a CloudError, with a
// hint for quota and rate-limit failures.
func apiErr(op string, err error) *cpi.Error {
	if err == nil {
		return nil
	}
	var ce *cpi.Error
	if errors.As(err, &ce) {
		return ce
	}
	hint := ""
	switch {
	case quotaExceeded(err):
		hint = "the project's quota is exhausted: free resources or ask the cloud admin to raise the quota"
	case statusOf(err) == http.StatusTooManyRequests:
		hint = "the API kept rate-limiting this client after retries"
	case statusOf(err) == http.StatusForbidden:
		hint = "the project's user lacks the permission (policy) for this call"
	case errors.Is(err, context.DeadlineExceeded):
		hint = "timed out; raise openstack.state_timeout if the cloud is slow"
	}
	return cloudErr(op, err, hint, transient(err))
}
