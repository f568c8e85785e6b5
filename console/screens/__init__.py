"""The console's screens: help, choosers, confirmation and partition resolution."""
