"""A subset of Upwork's GraphQL schema, executed with graphql-core."""

from __future__ import annotations

from graphql import GraphQLSchema, build_schema

SDL = '''
"""Upwork's GraphQL API (sandbox subset)."""
type Query {
  "The user the access token belongs to."
  user: User
  "The organization in whose context the request runs (X-Upwork-API-TenantId)."
  organization: Organization
  "The organizations the user can act for."
  companySelector: CompanySelector
}

type User {
  id: ID!
  nid: ID!
  rid: ID!
  name: String
  email: String
  "An absolute URL of the user's portrait."
  photoUrl: String
  "The profile key, e.g. ~0123456789abcdef01."
  ciphertext: String
}

type Organization {
  id: ID!
  rid: ID!
  name: String
  type: String
  legacyType: String
}

type CompanySelector {
  items: [CompanySelectorItem!]!
}

type CompanySelectorItem {
  title: String
  organizationId: ID!
  organizationRid: ID!
  photoUrl: String
}
'''


def build() -> GraphQLSchema:
    return build_schema(SDL)
