"""Background tasks: work that outlives the request.

A task is a request to a path of the site (a view, a script), queued by a
transaction and published later by a consuming Zope instance, as a
visitor's request is. This package holds the parts that need no Zope:

* ``model``: what a task is (plain data), checked when it is made;
* ``memory`` and ``sqlite``: the backends (``ITaskBackend``): where tasks
  wait, shared by the instances that use the same one;
* ``binding``: the transaction's data manager, which writes a
  transaction's tasks to the backend at its vote and makes them visible
  at its finish (runs on the thread that commits).
"""
