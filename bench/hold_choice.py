"""Issue 19: how STATUS_HOLD_SECONDS was chosen. The SDK 0.24's own wait schedule (tenacity
`wait_exponential(multiplier=2, max=30)`, `pasqal_cloud.utils.polling`) against held status
requests: for jobs of 1 s to 10 min, how late `wait=True` sees the end, and how many requests
it makes. A hold ends at the job's end or after H seconds; the SDK then sleeps 2, 4, 8, 16, 30,
30… s, and a job ending during a sleep is seen only at the next request.
"""

from __future__ import annotations

import statistics

from tenacity import wait_exponential

SDK_TIMEOUT = 30  # pasqal_cloud.http_client.TIMEOUT: a hold must end well before it


def seen(job_seconds: float, hold: float) -> tuple[float, int]:
    """(lateness, requests) of the SDK's wait for a job ending at `job_seconds`."""
    wait = wait_exponential(multiplier=2, max=30)
    t, requests, attempt = 0.0, 0, 0
    while True:
        requests += 1
        if hold <= 0 or t >= job_seconds:
            if t >= job_seconds:
                return t - job_seconds, requests
        elif t + hold >= job_seconds:
            return 0.0, requests
        else:
            t += hold
        attempt += 1

        class State:
            attempt_number = attempt

        t += wait(State())  # type: ignore[arg-type]


def main() -> None:
    durations = [d / 2 for d in range(2, 1201)]  # 1 s to 10 min, every 0.5 s
    print("hold | lateness mean / p95 / max (s) | requests for a 60 s / 600 s job")
    for hold in (0, 5, 10, 15, 20, 25):
        late = [seen(d, hold)[0] for d in durations]
        p95 = sorted(late)[int(0.95 * (len(late) - 1))]
        print(
            f"{hold:>4} | {statistics.mean(late):6.2f} / {p95:5.1f} / {max(late):5.1f} | "
            f"{seen(60, hold)[1]} / {seen(600, hold)[1]}"
        )


if __name__ == "__main__":
    main()
