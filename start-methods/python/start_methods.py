# Beyond the article: the three start methods, each starting the article's f('bob').
# Python 3.14 made forkserver the default on Linux; fork was the default before.
import multiprocessing as mp
import os


def info(title):
    print(title)
    print('module name:', __name__)
    if hasattr(os, 'getppid'):
        print('parent process:', os.getppid())
    print('process id:', os.getpid())


def f(name):
    info('function f')
    print('hello', name)


if __name__ == '__main__':
    for method in ['fork', 'spawn', 'forkserver']:
        ctx = mp.get_context(method)
        print('start method:', method)
        info('main line')
        p = ctx.Process(target=f, args=('bob',))
        p.start()
        p.join()
