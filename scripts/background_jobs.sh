# Background jobs whose output is shown when they are waited for; sourced by
# setup.sh and test.sh. Each job writes to a log of its own, which
# wait_background_jobs prints (in start order) once the job is done; it fails
# if any job failed. stop_background_jobs, for an EXIT trap, kills the jobs
# still running and removes their logs, so an early exit leaves neither a
# process nor a file behind.

BACKGROUND_PIDS=()
BACKGROUND_LOGS=()

start_background_job() {  # command [args...]: a command or a shell function
    local log
    log=$(mktemp -t nsl_job.XXXXXX)
    "$@" >"$log" 2>&1 &
    BACKGROUND_PIDS+=($!)
    BACKGROUND_LOGS+=("$log")
}

wait_background_jobs() {
    local i status=0
    for i in "${!BACKGROUND_PIDS[@]}"; do
        wait "${BACKGROUND_PIDS[$i]}" || status=$?
        cat "${BACKGROUND_LOGS[$i]}"
        rm -f "${BACKGROUND_LOGS[$i]}"
    done
    BACKGROUND_PIDS=()
    BACKGROUND_LOGS=()
    return "$status"
}

stop_background_jobs() {
    local pid
    for pid in ${BACKGROUND_PIDS[@]+"${BACKGROUND_PIDS[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    rm -f ${BACKGROUND_LOGS[@]+"${BACKGROUND_LOGS[@]}"}
}
