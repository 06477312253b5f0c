"""Party organisations on the grids and the party members who serve there.

Every grid has a party organisation (a committee, general branch, branch, joint branch or party group,
``twin.store.schema.PARTY_ORG_KINDS``): its secretary, its members and the buildings it covers (``orgs``).
Party members are residents tagged 党员; a member reports to a grid (报到), the grid whose services they join,
which need not be where they live, and their services are recorded with a day and hours. ``figures`` compares
the grids: members reported, members active this month, services done. Imports ``twin.store``,
``twin.grids`` (the grid tree) and ``twin.errors``; no UI.
"""
