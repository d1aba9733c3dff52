"""`vigil up`: start, health-check, supervise and stop every Vigil process and its embedded dependencies."""
