#!/bin/sh
# An asynctask `command` handler: "sends" an SMS by appending it to an outbox file.
#
# The contract (README, "Command tasks"): the task's data arrives as JSON on stdin — here a phone
# number, already checked against the task's schema in asynctask.json, so it is a JSON string of
# digits, spaces, dashes and an optional "+". ASYNCTASK_TASK_ID and ASYNCTASK_ATTEMPT are set.
# What this prints on stdout is the task's result; `progress: N message` lines on stderr become
# PROGRESS replies; exit 75 asks asynctask to retry later; any other non-zero exit fails the task.
set -eu

phone=$(tr -d '"\n')
outbox=${SMS_OUTBOX:-sms-outbox.txt}

echo "progress: 10 dialing the gateway for $phone" >&2
sleep "${SMS_DELAY:-1}"

# A busy gateway, simulated: the first attempt of every third task fails with EX_TEMPFAIL, so that
# the client shows asynctask retrying it.
if [ "${SMS_BUSY_EVERY:-0}" -gt 0 ] && [ "$ASYNCTASK_ATTEMPT" = 1 ] &&
  [ $((ASYNCTASK_TASK_ID % SMS_BUSY_EVERY)) = 0 ]; then
  echo "gateway busy, try again later" >&2
  exit 75
fi

echo "progress: 60 gateway accepted the message" >&2
sent_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '%s\ttask %s\tattempt %s\tto %s\tYour code is %04d\n' \
  "$sent_at" "$ASYNCTASK_TASK_ID" "$ASYNCTASK_ATTEMPT" "$phone" "$((ASYNCTASK_TASK_ID * 7919 % 10000))" >>"$outbox"
printf '{"phone":"%s","sent_at":"%s","outbox":"%s"}\n' "$phone" "$sent_at" "$outbox"
