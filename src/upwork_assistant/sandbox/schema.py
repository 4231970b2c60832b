"""A subset of Upwork's GraphQL schema, executed with graphql-core.

Type and field names follow Upwork's schema as published in two independent dumps:
borntojesus/upwork-crm ``schema/upwork.graphql`` (an SDL made by introspection) and
muhammedaksam/upwork-node ``src/generated/generated-types.ts``. Where they differ
(``FreelancerProfilePersonalData.address`` is only in the second) the field is kept, so
the product's query can be tested both ways with the scope switches. Scope errors name
fields by their concrete type (``CurrentUser.email``, ``Money.currency``), as Upwork's do.
"""

from __future__ import annotations

from graphql import GraphQLSchema, build_schema

SDL = '''
"""Upwork's GraphQL API (sandbox subset)."""
type Query {
  "The user the access token belongs to."
  user: CurrentUser
  "A freelancer's profile by its profile key (the user's ciphertext)."
  freelancerProfileByProfileKey(profileKey: String!): FreelancerProfile!
  "The organization in whose context the request runs (X-Upwork-API-TenantId)."
  organization: Organization
  "The organizations the user can act for."
  companySelector: CompanySelector
}

"""The fields every user type has (Upwork: an interface; `Query.user` is a CurrentUser)."""
interface User {
  id: ID!
  nid: ID!
  rid: ID!
}

"The signed-in user (Upwork: `Query.user: CurrentUser`)."
type CurrentUser implements User {
  id: ID!
  nid: ID!
  rid: ID!
  name: String
  email: String
  "An absolute URL of the user's portrait."
  photoUrl: String
  "The profile key, e.g. ~0123456789abcdef01."
  ciphertext: String
  "The user's freelancer profile; null for an account without one (a client's)."
  freelancerProfile: FreelancerProfile
}

"A user as anyone may see them."
type GenericUser implements User {
  id: ID!
  nid: ID!
  rid: ID!
  name: String
  photoUrl: String
  ciphertext: String
}

"What clients see of a freelancer."
type FreelancerProfile {
  userDetails: GenericUser!
  "first name + last name"
  fullName: String!
  firstName: String!
  lastName: String!
  countryDetails: Country
  portrait: Portrait
  personalData: FreelancerProfilePersonalData!
  userPreferences: FreelancerProfileUserPreferences!
  skills: FreelancerSkillsConnection!
  languages: FreelancerProfileLanguagesConnection!
  availability: FreelancerProfileAvailability
  aggregates: FreelancerProfileAggregates!
  educationRecords: [FreelancerProfileEducationRecord!]!
  employmentRecords: [FreelancerProfileEmploymentRecord!]!
}

type FreelancerProfilePersonalData {
  firstName: String!
  lastName: String!
  portrait: Portrait
  title: String
  description: String
  address: FreelancerLocation
  chargeRate: Money!
  profileUrl: String
  profileState: PersonalDataProfileState
}

enum PersonalDataProfileState {
  IN_PROGRESS
  ACCEPTED
  DRAFT
  REJECTED
  UNDER_REVIEW
  NOT_STARTED
}

type FreelancerLocation {
  countryName: String
  cityName: String
  zip: String
  "IANA time zone, e.g. America/Los_Angeles"
  timezone: String!
  street: String
}

"Money: the amount as a decimal string, an ISO 4217 currency, and how Upwork shows it."
type Money {
  rawValue: String!
  currency: String!
  displayValue: String!
}

type Portrait {
  portrait: String
  portrait32: String
  portrait50: String
  portrait100: String
  portrait150: String
  portrait500: String
}

type Country {
  id: ID
  name: String
  twoLetterAbbreviation: String
  threeLetterAbbreviation: String
}

type FreelancerSkillsConnection {
  edges: [FreeLancerSkillEdge!]
}

type FreeLancerSkillEdge {
  node: Skill!
}

type Skill {
  id: ID!
  ontologyId: String!
  preferredLabel: String!
  prettyName: String
}

type FreelancerProfileLanguagesConnection {
  edges: [FreelancerProfileLanguageEdge!]
}

type FreelancerProfileLanguageEdge {
  node: FreelancerProfileLanguage!
}

type FreelancerProfileLanguage {
  id: ID!
  language: Language!
  verified: Boolean
}

type Language {
  iso639Code: String!
  active: Boolean!
  englishName: String!
}

enum FreelancerProfileAvailabilityCapacity {
  fullTime
  partTime
  lessThen
  notSure
  rangeOfHours
  none
}

type FreelancerProfileAvailability {
  id: ID!
  capacity: FreelancerProfileAvailabilityCapacity
  "The next availability date when not available now."
  availabilityDateTime: String
  "Availability status name."
  name: String!
  createdDateTime: String!
}

type FreelancerProfileAggregates {
  jobSuccessScore: Float
  topRatedStatus: String
  topRatedPlusStatus: String
  totalHours: Float
  totalHourlyJobs: Int
  totalFixedJobs: Int
  totalFeedback: Float
  totalEarnings: Money
}

type FreelancerProfileEducationRecord {
  id: ID!
  institutionName: String!
  areaOfStudy: String
  degree: String
  startDate: String
  endDate: String
  description: String
}

type FreelancerProfileEmploymentRecord {
  id: ID!
  companyName: String!
  jobTitle: String!
  role: String
  startDate: String!
  endDate: String
  description: String
  city: String!
  country: String!
}

enum FreelancerProfileVisibility {
  PUBLIC
  ONLY_UPWORK_USERS
  PRIVATE
  AUTH
}

type FreelancerProfileUserPreferences {
  visibilityLevel: FreelancerProfileVisibility!
  hideEarnings: Boolean
  exposeFullName: Boolean!
  hideJss: Boolean!
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
