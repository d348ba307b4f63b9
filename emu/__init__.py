"""exitlab.emu: run x86 guest snippets under Unicorn and turn their VM exits into records.

Data flows one way: guest snippet -> Machine (trap) -> ExitRecord -> path -> Access -> device.
"""

__version__ = "0.1.0"
