"""Local fakes of the outside services mailbeacon talks to, served over real protocols."""
