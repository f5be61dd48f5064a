"""The bench's Python side: one workload, timed with Python's own multiprocessing.

Usage: python3 bench/python/bench.py WORKLOAD N
Prints the seconds the timed part took. Pools and managers are made before timing starts,
and every result is checked: a wrong total exits with status 1 and says what was wrong.
`cargo run --release -p bench` runs this beside the Rust side; see bench/src/main.rs.
"""
import sys
import time
from multiprocessing import (Lock, Manager, Pool, Process, Queue, Value, get_context,
                             set_start_method)


def empty():
    pass


def sq(x):
    return x * x


def process(n):
    start = time.perf_counter()
    for _ in range(n):
        start_and_join(1, empty)
    return time.perf_counter() - start


def start_by(method, n):
    ctx = get_context(method)
    start = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=empty)
        p.start()
        p.join()
        check(p.exitcode == 0, "a process ended with %s" % p.exitcode)
    return time.perf_counter() - start


def stop_helpers():
    """Ends the fork server and the resource tracker now, as CPython's own tests do: they
    would end by themselves just after this program, which must leave no process behind."""
    from multiprocessing import forkserver, resource_tracker
    for helper in (forkserver._forkserver, resource_tracker._resource_tracker):
        getattr(helper, '_stop', lambda: None)()


def spawn(n):
    elapsed = start_by('spawn', n)
    stop_helpers()
    return elapsed


def forkserver(n):
    start_by('forkserver', 1)  # The server starts, and starts one child, before the timer.
    elapsed = start_by('forkserver', n)
    stop_helpers()
    return elapsed


def pool_map(n):
    with Pool(2) as pool:
        start = time.perf_counter()
        result = pool.map(sq, range(n))
        elapsed = time.perf_counter() - start
    check(result == [x * x for x in range(n)], "map returned wrong squares")
    return elapsed


def apply(n):
    with Pool(2) as pool:
        start = time.perf_counter()
        for i in range(n):
            check(pool.apply(sq, (i,)) == i * i, "apply returned a wrong square")
        return time.perf_counter() - start


def apply_async(n):
    with Pool(2) as pool:
        start = time.perf_counter()
        results = [pool.apply_async(sq, (i,)) for i in range(n)]
        squares = [r.get() for r in results]
        elapsed = time.perf_counter() - start
    check(squares == [x * x for x in range(n)], "apply_async returned wrong squares")
    return elapsed


def producer(q, n):
    for i in range(n):
        q.put((i, 'hello'))


def queue(n):
    q = Queue()
    start = time.perf_counter()
    p = Process(target=producer, args=(q, n))
    p.start()
    for i in range(n):
        check(q.get() == (i, 'hello'), "the queue lost or reordered a message")
    p.join()
    return time.perf_counter() - start


def locker(lock, n):
    for _ in range(n):
        lock.acquire()
        lock.release()


def lock(n):
    lock = Lock()
    start = time.perf_counter()
    start_and_join(2, locker, lock, n)
    return time.perf_counter() - start


def adder(num, n):
    for _ in range(n):
        with num.get_lock():
            num.value += 1


def value(n):
    num = Value('q', 0)
    start = time.perf_counter()
    start_and_join(2, adder, num, n)
    elapsed = time.perf_counter() - start
    check(num.value == 2 * n, "the total is %d, not %d" % (num.value, 2 * n))
    return elapsed


def setter(d, n):
    for i in range(n):
        d[i] = i


def manager(n):
    with Manager() as m:
        d = m.dict()
        start = time.perf_counter()
        start_and_join(1, setter, d, n)
        elapsed = time.perf_counter() - start
        check(len(d) == n and d[n - 1] == n - 1, "the dict holds %d items, not %d" % (len(d), n))
    return elapsed


def start_and_join(processes, target, *args):
    """Starts `processes` that each run target(*args), joins them, checks each exited 0."""
    ps = [Process(target=target, args=args) for _ in range(processes)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    check(all(p.exitcode == 0 for p in ps), "a process ended with %s" % [p.exitcode for p in ps])


def check(ok, what):
    if not ok:
        sys.exit("bench.py: " + what)


WORKLOADS = {
    'process': process,
    'spawn': spawn,
    'forkserver': forkserver,
    'map': pool_map,
    'apply': apply,
    'apply_async': apply_async,
    'queue': queue,
    'lock': lock,
    'value': value,
    'manager': manager,
}

if __name__ == '__main__':
    # Python 3.14 made forkserver the default on Linux; the Rust side forks, and so does this.
    set_start_method('fork')
    if len(sys.argv) != 3 or sys.argv[1] not in WORKLOADS or not sys.argv[2].isdigit():
        sys.exit("usage: python3 bench.py {%s} N" % ','.join(WORKLOADS))
    print(WORKLOADS[sys.argv[1]](int(sys.argv[2])))
