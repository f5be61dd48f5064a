# Why `+=` on a Value needs its lock: two processes add 1 a hundred thousand times each
from multiprocessing import Process, Value, set_start_method


def add(n, times):
    for _ in range(times):
        n.value += 1


def add_locked(n, times):
    for _ in range(times):
        with n.get_lock():
            n.value += 1


if __name__ == '__main__':
    # Python 3.14 made forkserver the default on Linux; the article teaches fork.
    set_start_method('fork')
    for name, target in [('without get_lock', add), ('with get_lock', add_locked)]:
        num = Value('i', 0)
        ps = [Process(target=target, args=(num, 100000)) for _ in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        print(name + ':', num.value)
